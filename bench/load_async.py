"""32 concurrent async searches for a fixed time: throughput, latency percentiles, errors, wrong answers.

    KRET_HOME=/work/eval-home python bench/load_async.py --collection eval-korquad-dev-hard-… \
        --queries ../shared/data/bench/korquad-dev-hard/queries.jsonl --client retriever --seconds 60
    … --client api                         # the Python API: Searcher.search through asyncio.to_thread

Two ways a RAG service calls kret from asyncio:

- ``retriever``: ``KretRetriever.ainvoke`` (LangChain). Concurrent calls are queued to the collection's worker
  thread, which embeds up to ``max_batch_size`` of them in one model call (docs/langchain.md, *Async*).
- ``api``: one shared ``Searcher`` (``Kret().open(name)``) called as ``await asyncio.to_thread(searcher.search,
  q, opts)`` — the plain Python API behind a thread pool, as a web server would use it.

``--concurrency`` coroutines loop for ``--seconds``, each taking the next query of a fixed sample (``--sample``
distinct queries, cycled). Before the clock starts every sampled query is searched once, sequentially, and
its ranked chunk ids kept: under load each answer is compared with that reference. An answer sharing fewer
than half of its ids with the reference belongs to another query (state shared between threads) and counts
as ``wrong``, not as a success; the same ids in another order are counted apart (``reordered``: a query
embedded in a micro-batch is padded with others, which can move near-ties). Prints one JSON object
(``--out`` also writes it): requests, errors by type, wrong and reordered answers, throughput, p50/p95/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import time
from collections import Counter
from pathlib import Path

import numpy as np

from kret.api import Kret


def read_queries(path: Path, n: int, seed: int) -> list[str]:
    texts = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                texts.append(json.loads(line)["text"])
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(texts), size=min(n, len(texts)), replace=False)
    return [texts[i] for i in sorted(pick)]


def ids_of(result) -> tuple[str, ...]:
    """Ranked chunk ids of a Searcher result (Hits) or a retriever result (Documents)."""
    return tuple(getattr(r, "chunk_id", None) or r.id for r in result)


async def drive(call, queries: list[str], reference: dict[str, tuple], concurrency: int, seconds: float):
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    wrong = reordered = 0
    cursor = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal cursor, wrong, reordered
        while time.perf_counter() < deadline:
            q = queries[cursor % len(queries)]
            cursor += 1
            t0 = time.perf_counter()
            try:
                result = await call(q)
            except Exception as exc:  # noqa: BLE001 - counted and reported, the load goes on
                errors[f"{type(exc).__name__}: {str(exc)[:120]}"] += 1
                continue
            latencies.append(time.perf_counter() - t0)
            got, want = ids_of(result), reference[q]
            if len(set(got) & set(want)) * 2 < len(want):
                wrong += 1
            elif got != want:
                reordered += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors, wrong, reordered, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--collection", required=True)
    ap.add_argument("--queries", type=Path, required=True, help="BEIR queries.jsonl (field 'text')")
    ap.add_argument("--client", choices=["retriever", "api"], default="retriever")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--sample", type=int, default=500, help="distinct queries, cycled")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--mode", default="hybrid")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    queries = read_queries(args.queries, args.sample, args.seed)
    kr = Kret()
    chunks = kr.collection_info(args.collection)["chunks"]
    t_open = time.perf_counter()
    if args.client == "retriever":
        retriever = kr.as_retriever(collection=args.collection, k=args.k, mode=args.mode).warm_up()

        async def call(q: str):
            return await retriever.ainvoke(q)

        def reference_of(q: str):
            return retriever.invoke(q)

    else:
        searcher = kr.open(args.collection)
        opts = kr.search_options(k=args.k, mode=args.mode)

        async def call(q: str):
            return await asyncio.to_thread(searcher.search, q, opts)

        def reference_of(q: str):
            return searcher.search(q, opts)

    reference_of(queries[0])  # the first query loads Kiwi (seconds): not part of either measurement
    open_s = time.perf_counter() - t_open
    t_ref = time.perf_counter()
    reference = {q: ids_of(reference_of(q)) for q in queries}
    sequential_ms = (time.perf_counter() - t_ref) / len(queries) * 1000

    latencies, errors, wrong, reordered, wall = asyncio.run(
        drive(call, queries, reference, args.concurrency, args.seconds)
    )
    lat = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    report = {
        "client": args.client,
        "collection": args.collection,
        "chunks": chunks,
        "mode": args.mode,
        "k": args.k,
        "concurrency": args.concurrency,
        "seconds": round(wall, 1),
        "requests_ok": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "wrong_answers": wrong,
        "reordered_answers": reordered,
        "throughput_qps": round(len(latencies) / wall, 2),
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p95_ms": round(float(np.percentile(lat, 95)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "sequential_ms_per_query": round(sequential_ms, 1),
        "open_s": round(open_s, 1),
        "distinct_queries": len(queries),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, 2),
        "runtime": kr.settings.runtime,
        "precision": kr.settings.precision,
        "threads": kr.settings.threads,
        "cpus": os.cpu_count(),
        "load_avg_after": os.getloadavg()[0],
        "machine": platform.processor() or platform.machine(),
    }
    text = json.dumps(report, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
