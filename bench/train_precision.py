"""fp32 vs bf16 autocast for training on this CPU: seconds per step and the loss curve, interleaved rounds.

Same rows, seed, model and schedule for both precisions, so the loss curves are comparable step by step; the
precisions alternate (fp32, bf16, fp32, bf16, ...) so that a change in machine load hits both alike.

    KRET_HOME=.kret/ft-home python bench/train_precision.py --steps 3 --batch 8 --rounds 2 \
        --out .kret/ft-data/precision.json

Rows: korquad-dev (question, paragraph) pairs, the first ``steps × batch`` of a seeded shuffle.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "bench" / "korquad-dev"


def rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    corpus = {}
    for line in (BENCH / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        corpus[d["_id"]] = f"{d['title']}\n{d['text']}"
    queries = {}
    for line in (BENCH / "queries.jsonl").read_text(encoding="utf-8").splitlines():
        q = json.loads(line)
        queries[q["_id"]] = q["text"]
    pairs, seen = [], set()
    for line in (BENCH / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        qid, did, _ = line.split("\t")
        if did not in seen:  # one question per paragraph: no duplicate positives in a batch
            seen.add(did)
            pairs.append({"anchor": queries[qid], "positive": corpus[did]})
    random.Random(seed).shuffle(pairs)
    return pairs[:n]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    from kret.api import Kret
    from kret.trainer.fit import FitConfig, fit

    kr = Kret()
    base = kr.resolve_model()
    data = rows(args.steps * args.batch)
    results = []
    for r in range(args.rounds):
        for precision in ("fp32", "bf16"):
            cfg = FitConfig(
                batch_size=args.batch,
                max_steps=args.steps,
                lr=1e-5,
                precision=precision,
                torch_threads=args.threads,
                logging_steps=1,
                save_steps=10_000,
            )
            with tempfile.TemporaryDirectory() as tmp:
                t = time.perf_counter()
                _, stats = fit(
                    base, data, cfg, run_dir=Path(tmp), prompts={"query": "query: ", "passage": "passage: "}
                )
                wall = time.perf_counter() - t
            row = {
                "round": r,
                "precision": stats["precision"],
                "train_s": stats["seconds"],
                "s_per_step": round(stats["seconds"] / args.steps, 2),
                "wall_s": round(wall, 1),
                "loss": stats["loss_history"],
                "mini_batch": stats["mini_batch_size"],
            }
            print(json.dumps(row), flush=True)
            results.append(row)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"base": base.fingerprint, "runs": results}, indent=2))


if __name__ == "__main__":
    main()
