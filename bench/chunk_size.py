"""Chunk size × dense / sparse / hybrid: which chunk size should kret default to? (issue 14)

    # the development set the default is chosen on (training pairs, no benchmark query among them):
    python bench/chunk_size.py run --pairs ../shared/data/train/miracl-mrtydi-ko/train.jsonl --out .kret/chunk-size
    # the benchmark sets it is then reported on:
    python bench/chunk_size.py run --dataset ../shared/data/bench/korquad-dev --out .kret/chunk-size
    python bench/chunk_size.py report .kret/chunk-size --json bench/out/chunk_size.json

``run`` indexes the corpus once per size (``--sizes``, default ``128,256,384,auto``; ``auto`` is kret's
default, the model's window minus its prompt) in its own KRET_HOME (``--home``, default
``.kret/chunk-size-home``), so every index time is a build from scratch on the same machine, and saves each
branch's top 100 per query with ``bench/branch_runs.py``. The overlap is proportional to the size: an eighth,
which is kret's default 64 tokens at the 508-token ``auto`` size.

``report`` scores, per set and size, dense, sparse and the default hybrid (DBSF, replayed client-side with
Qdrant's formula, as ``bench/fusion_replay.py`` does) at document level (a document's score is its best
chunk's), NDCG@10 / Recall@10 / MRR@10 with bootstrap CIs, and the paired randomisation test of NDCG@10
against the ``auto`` size; plus chunk count and index time.

``--pairs`` turns a query → passage pairs file into a BEIR folder under ``--out`` (corpus = the pairs'
distinct positives, qrels = the pairs; ``bench/indexed_text.py``'s ``beir_from_pairs``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fusion_replay import load  # noqa: E402
from indexed_text import beir_from_pairs  # noqa: E402

from kret.evaluators.fusion_fit import branch_fuser, method_fuser, score_method  # noqa: E402
from kret.evaluators.stats import bootstrap_ci, paired_test  # noqa: E402

SYSTEMS = ("dense", "sparse", "hybrid (dbsf)")
METRICS = ("ndcg@10", "recall@10", "mrr@10")
REFERENCE = "auto"


def overlap_for(size: str) -> int | None:
    """An eighth of the chunk, kret's default ratio (64 tokens at the 508-token auto size)."""
    return None if size == REFERENCE else max(1, int(size) // 8)


def run(args: argparse.Namespace) -> None:
    dataset = args.dataset
    if args.pairs:
        dataset = args.out / f"dev-{args.pairs.parent.name}"
        if not dataset.exists():
            beir_from_pairs(args.pairs, dataset)
    for size in args.sizes.split(","):
        env = dict(os.environ, KRET_HOME=str(args.home.resolve()))
        env.pop("KRET_CHUNK_TOKENS", None)
        env.pop("KRET_CHUNK_OVERLAP", None)
        if size != REFERENCE:
            env |= {"KRET_CHUNK_TOKENS": size, "KRET_CHUNK_OVERLAP": str(overlap_for(size))}
        print(f"== {dataset.name} chunk size {size}", flush=True)
        subprocess.run(
            [
                sys.executable,
                str(Path(__file__).with_name("branch_runs.py")),
                "--dataset",
                str(dataset),
                "--out",
                str(args.out / f"c{size}"),
            ],
            env=env,
            check=True,
        )


def embedded_tokens(home: Path, collection: str) -> int:
    """Tokens the model embedded for a collection (every chunk's embedded text, with its prompt): what index
    time is made of, and unlike a time on a shared machine, free of load."""
    from kret.api import Kret
    from kret.engine.ingest import stored_chunk

    searcher = Kret(home=home).open(collection)
    try:
        texts = [stored_chunk(p).embed_text for p in searcher.collection.store.scroll_chunks()]
        emb = searcher.embedder
        return sum(emb.count_tokens(texts)) + len(texts) * emb.prompt_overhead
    finally:
        searcher.collection.close()


def _size_key(folder: Path) -> tuple[int, int]:
    size = folder.name.removeprefix("c")
    return (1, 0) if size == REFERENCE else (0, int(size))


def report(args: argparse.Namespace) -> None:
    folders = sorted((p for p in args.out.glob("c*") if p.is_dir()), key=_size_key)
    datasets = sorted({m.name.removesuffix(".meta.json") for f in folders for m in f.glob("*.meta.json")})
    out: dict = {}
    for ds in datasets:
        sizes = [f for f in folders if (f / f"{ds}.meta.json").exists()]
        scored: dict[str, dict] = {}
        for folder in sizes:
            size = folder.name.removeprefix("c")
            meta_path = folder / f"{ds}.meta.json"
            meta = json.loads(meta_path.read_text())
            if "embedded_tokens" not in meta and args.home.exists():
                meta["embedded_tokens"] = embedded_tokens(args.home, meta["collection"])
                meta_path.write_text(json.dumps(meta))
            _, runs = load(str(folder / ds))
            scored[size] = {
                "meta": meta,
                "qids": [r.qid for r in runs],
                "dense": score_method(runs, branch_fuser("dense")),
                "sparse": score_method(runs, branch_fuser("sparse")),
                "hybrid (dbsf)": score_method(runs, method_fuser("dbsf")),
            }
        ref = scored.get(REFERENCE)
        first = next(iter(scored.values()))["meta"]
        print(
            f"\n## {ds} ({len(next(iter(scored.values()))['qids'])} queries; data {first['data_hash'][:12]}, "
            f"model {first['model']['fingerprint'][:12]})"
        )
        print(
            "| chunk tokens / overlap | chunks | tokens embedded | index s | system | NDCG@10 | Recall@10 | MRR@10 "
            f"| Δ NDCG@10 vs {REFERENCE} [95 % CI], p |"
        )
        print("|---|---:|---:|---:|---|---:|---:|---:|---|")
        out[ds] = {"data_hash": first["data_hash"], "model": first["model"], "sizes": {}}
        for size, s in scored.items():
            meta = s["meta"]
            ch = meta["chunking"]
            entry = {
                "chunking": ch,
                "n_chunks": meta.get("n_chunks"),
                "embedded_tokens": meta.get("embedded_tokens"),
                "index_s": meta.get("index_s"),
                "from_scratch": bool(meta.get("added")),  # 0 added: an index of an earlier run was reused
                "systems": {},
            }
            for system in SYSTEMS:
                res = s[system]
                cells, row = [], {}
                for m in METRICS:
                    vals = res.values(m)
                    lo, hi = bootstrap_ci(vals)
                    cells.append(
                        f"{vals.mean():.4f}" if m != "ndcg@10" else f"{vals.mean():.4f} [{lo:.3f}–{hi:.3f}]"
                    )
                    row[m] = {"mean": float(vals.mean()), "ci": [lo, hi]}
                test = "–"
                if ref is not None and size != REFERENCE:
                    if ref["qids"] != s["qids"]:
                        raise SystemExit(f"{ds}: query order differs between c{size} and c{REFERENCE}")
                    t = paired_test(ref[system].values("ndcg@10"), res.values("ndcg@10"))
                    test = f"{t.delta:+.4f} [{t.ci_low:+.4f}, {t.ci_high:+.4f}], p {t.p_value:.3f}"
                    row["vs_" + REFERENCE] = t._asdict()
                entry["systems"][system] = row
                index_s = f"{meta['index_s']:.0f}" if meta.get("index_s") is not None else "?"
                print(
                    f"| {ch['chunk_tokens']} / {ch['overlap_tokens']} | {meta.get('n_chunks', '?')} "
                    f"| {meta.get('embedded_tokens', '?')} | {index_s} "
                    f"| {system} | " + " | ".join(cells) + f" | {test} |"
                )
            out[ds]["sizes"][size] = entry
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=float))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="index once per size and save both branches' top 100 per query")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", type=Path, help="a BEIR folder")
    src.add_argument("--pairs", type=Path, help="a query → passage pairs file (a development set)")
    r.add_argument("--sizes", default=f"128,256,384,{REFERENCE}")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--home", type=Path, default=Path(".kret/chunk-size-home"))
    p = sub.add_parser("report", help="score every saved size per set")
    p.add_argument("out", type=Path)
    p.add_argument("--json", type=Path)
    p.add_argument(
        "--home",
        type=Path,
        default=Path(".kret/chunk-size-home"),
        help="run's home: to count embedded tokens",
    )
    args = ap.parse_args()
    run(args) if args.cmd == "run" else report(args)


if __name__ == "__main__":
    main()
