"""Token budget of one embedding call (``embed_batch_tokens``): speed against the process's peak memory.

    python bench/embed_budget.py --home /tmp/kret-real2g --budgets 16384 8192 4096 --rounds 3

Why: on a 2 GB machine the embedding call's buffers are what is left to cut (attention scores alone are
texts x 12 heads x 512² floats: 0.4 GB for 32 texts of 512 tokens), while the store and Kiwi are fixed. The
texts are what a large Korean document gives kret: consecutive slices of kowiki text (``large_doc.py make``
output) cut to the model's full window, so every call has ``budget / 512`` texts and no padding.

Each (round, budget) runs in a fresh process (``one`` subcommand), budgets rotated each round, so the peak
(``ru_maxrss`` and the anonymous high-water mark sampled after warm-up) belongs to that budget alone. Speed is
tokens/s over the same texts, after one warm-up call. Prints one JSON line per run and a markdown summary
(median over rounds). The model is KRET_HOME's default model at the settings' runtime and precision.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _anon_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return 0.0


def one(home: Path, text_file: Path, budget: int, n_texts: int) -> dict:
    """Embed ``n_texts`` full-window slices in calls of ``budget`` tokens; speed and peaks of this process."""
    from kret.api import Kret

    kr = Kret(home=home)
    emb = kr.embedder(kr.resolve_model())
    window = emb.max_seq_length
    text = text_file.read_text(encoding="utf-8")
    texts, pos = [], 0
    # ~1.3 characters per e5 token in Korean: cut twice the window, the tokenizer truncates
    while len(texts) < n_texts:
        texts.append(text[pos : pos + 2 * window])
        pos += 2 * window
    per_call = max(1, budget // window)
    emb.batch_size = per_call  # one model call per embedding call, as kret's token batches make them
    emb.encode_passages(texts[:per_call])  # warm-up (first inference, allocator)
    anon_before = _anon_mb()
    t = time.perf_counter()
    for start in range(0, len(texts), per_call):
        emb.encode_passages(texts[start : start + per_call])
    seconds = time.perf_counter() - t
    tokens = sum(min(n, window) for n in emb.count_tokens(texts))
    return {
        "budget": budget,
        "texts_per_call": per_call,
        "tokens": tokens,
        "seconds": round(seconds, 2),
        "tokens_per_s": round(tokens / seconds),
        "anon_mb_after_warmup": round(anon_before),
        "anon_mb_end": round(_anon_mb()),
        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, required=True, help="a KRET_HOME with the default model built")
    ap.add_argument("--text", type=Path, default=Path("/tmp/ko50.txt"), help="large_doc.py make output")
    ap.add_argument("--budgets", type=int, nargs="+", default=[16384, 8192, 4096])
    ap.add_argument("--texts", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # internal: one budget, here
    a = ap.parse_args()
    if a.one is not None:
        print(json.dumps(one(a.home, a.text, a.one, a.texts)), flush=True)
        return
    runs: dict[int, list[dict]] = {b: [] for b in a.budgets}
    for r in range(a.rounds):
        order = a.budgets[r % len(a.budgets) :] + a.budgets[: r % len(a.budgets)]
        for budget in order:
            cmd = [sys.executable, __file__, "--home", str(a.home), "--text", str(a.text)]
            cmd += ["--texts", str(a.texts), "--one", str(budget)]
            line = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ).stdout
            result = json.loads(line.strip().splitlines()[-1])
            result["round"] = r
            print(json.dumps(result), flush=True)
            runs[budget].append(result)
    print(f"\nload average {os.getloadavg()[0]:.2f}\n")
    print(
        "| embed_batch_tokens | texts per call | tokens/s (median) | peak RSS MB (median) | anon MB at end |"
    )
    print("|---:|---:|---:|---:|---:|")
    for budget, rs in runs.items():
        med = {
            k: statistics.median(x[k] for x in rs) for k in ("tokens_per_s", "ru_maxrss_mb", "anon_mb_end")
        }
        print(
            f"| {budget} | {rs[0]['texts_per_call']} | {med['tokens_per_s']:,.0f} | "
            f"{med['ru_maxrss_mb']:,.0f} | {med['anon_mb_end']:,.0f} |"
        )


if __name__ == "__main__":
    main()
