"""Added query latency of a client-side fusion vs DBSF inside Qdrant, at the store level.

    KRET_HOME=.kret/bench-home python bench/fusion_latency.py --dataset ../shared/data/bench/miracl-ko-mini \
        [--n 200] [--rounds 5] [--fusion-param bias=0.25 ...]

Query vectors (dense and Kiwi BM25) are computed once, so the model's encode — the same for every fusion —
is left out; then ``Store.query`` runs each query with DBSF (fused in Qdrant) and with ``adaptive`` (both
branch lists fetched in one batch, fused client-side, payloads of the top 10 fetched by id), in interleaved
rounds so machine load hits both alike. Prints p50/p95 per method and the p50 of the per-query difference.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from kret.api import Kret
from kret.engine.search import SearchOptions
from kret.evaluators.beir import load_beir
from kret.evaluators.runner import eval_collection_name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--fusion-param", action="append", default=[])
    args = ap.parse_args()
    params = {k: float(v) for k, v in (p.split("=", 1) for p in args.fusion_param)}
    ds = load_beir(__import__("pathlib").Path(args.dataset))
    kr = Kret()
    info = kr.resolve_model()
    searcher = kr.open(
        eval_collection_name(
            ds, info.fingerprint, kr.settings.chunk_tokens, f"{kr.settings.runtime}-{kr.settings.precision}"
        )
    )
    try:
        texts = [ds.queries[q] for q in list(ds.queries)[: args.n]]
        dense = searcher.embedder.encode_queries(texts)
        sparse = [searcher.encoder.encode_query(t) for t in texts]
        specs = {}
        for name, opts in (
            ("dbsf", SearchOptions(k=10, fusion="dbsf")),
            ("adaptive", SearchOptions(k=10, fusion="adaptive", fusion_params=params)),
        ):
            opts.validate()
            specs[name] = [searcher._spec(dense[i], sparse[i], opts, [], False) for i in range(len(texts))]
        times = {name: np.zeros((args.rounds, len(texts))) for name in specs}
        store = searcher.collection.store
        for r in range(args.rounds):
            order = list(specs) if r % 2 == 0 else list(reversed(specs))
            for i in range(len(texts)):
                for name in order:
                    t0 = time.perf_counter()
                    store.query(specs[name][i])
                    times[name][r, i] = (time.perf_counter() - t0) * 1000
    finally:
        searcher.collection.close()
    for name, t in times.items():
        print(f"{name}: p50 {np.percentile(t, 50):.2f} ms, p95 {np.percentile(t, 95):.2f} ms")
    diff = times["adaptive"] - times["dbsf"]
    print(f"adaptive − dbsf per query: p50 {np.percentile(diff, 50):+.2f} ms, mean {diff.mean():+.2f} ms")


if __name__ == "__main__":
    main()
