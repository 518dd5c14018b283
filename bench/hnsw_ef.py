"""What the HNSW beam width (``hnsw_ef``) costs and buys: recall against exact search, NDCG@10, latency.

    KRET_HOME=.kret/bench-home python bench/hnsw_ef.py --dataset ../shared/data/bench/korquad-dev-hard \
        --ef 100,200,400 --out bench/out/hnsw_ef

Opens the dataset's ``kret eval`` collection (indexing it first if it is missing, as ``kret eval`` would), embeds
every query once, then for exact dense search and for each ``ef``: every query as ``kret eval`` runs it (depth
100, dense and hybrid with the collection's fusion), and 300 single queries at top 10 for latency — the store's
time only, the query vectors are embedded beforehand (embedding adds 10–30 ms per query).

The choice of ``ef`` should not look at relevance labels: the label-free number here is **overlap@10**, the
share of exact search's top 10 chunks that the dense HNSW search returns in its top 10, and **overlap@100** for
the 100 candidates a hybrid prefetch hands to fusion. NDCG@10 (document level, 95 % bootstrap CI) and the paired
test against exact search are reported next to it to show what that recall is worth. Writes one JSON per
dataset and prints it.

``--overlap-queries FILE`` (JSON lines with a ``query`` or ``text`` field, e.g.
``../shared/data/train/miracl-mrtydi-ko/train.jsonl``) measures only the label-free overlap, with questions
that are not the benchmark's: the way to choose ``ef`` without looking at the queries that are reported on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from kret.api import Kret
from kret.engine.search import SearchOptions
from kret.evaluators.beir import load_beir
from kret.evaluators.metrics import chunks_to_docs, evaluate
from kret.evaluators.runner import eval_collection_name
from kret.evaluators.stats import MEAN, bootstrap_ci, paired_test_many

DEPTH = 100  # what kret eval searches per query (chunks), so these numbers are kret eval's
LATENCY_QUERIES = 300


def _runs(searcher, ds, qids, vectors, opts: SearchOptions) -> tuple[dict, dict]:
    """Every query at ``opts``: document-level run for scoring, and the chunk ids in rank order."""
    hits_per_query, chunk_ids = {}, {}
    for i in range(0, len(qids), 64):
        batch = qids[i : i + 64]
        results = searcher.search_many(
            [ds.queries[q] for q in batch], opts, query_vectors=vectors[i : i + 64]
        )
        for qid, hits in zip(batch, results, strict=True):
            hits_per_query[qid] = [
                ((h.payload.get("meta") or {}).get("source_id", h.doc_id), h.score) for h in hits
            ]
            chunk_ids[qid] = [h.chunk_id for h in hits]
    return chunks_to_docs(hits_per_query), chunk_ids


def _latency(searcher, texts: list[str], vectors, opts: SearchOptions) -> dict:
    single = SearchOptions(**{**opts.__dict__, "k": 10})
    n = min(LATENCY_QUERIES, len(texts))
    for i in range(min(20, n)):  # warm-up: page cache, lazily built structures
        searcher.search_many([texts[i]], single, query_vectors=vectors[i : i + 1])
    ms = []
    for i in range(n):
        t0 = time.perf_counter()
        searcher.search_many([texts[i]], single, query_vectors=vectors[i : i + 1])
        ms.append((time.perf_counter() - t0) * 1000)
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
    }


def _ndcg(result, qids) -> np.ndarray:
    return np.array([result.per_query["ndcg@10"][q] for q in qids])


def _overlap(a: dict, b: dict, k: int) -> float:
    return round(float(np.mean([len(set(a[q][:k]) & set(b[q][:k])) / k for q in a])), 4)


def _overlap_only(searcher, texts: list[str], efs: list[int]) -> dict:
    """Dense overlap@10 / overlap@100 of each ``ef`` with exact search, for queries that have no labels here,
    and the latency of dense and hybrid search at each setting."""
    vectors = searcher.embedder.encode_queries(texts)

    def top(opts: SearchOptions) -> list[list[str]]:
        out = []
        for i in range(0, len(texts), 64):
            hits = searcher.search_many(texts[i : i + 64], opts, query_vectors=vectors[i : i + 64])
            out.extend([h.chunk_id for h in hs] for hs in hits)
        return out

    def latency(knobs: dict) -> dict:
        return {
            mode: _latency(searcher, texts, vectors, searcher.options(SearchOptions(mode=mode, **knobs)))
            for mode in ("dense", "hybrid")
        }

    exact = dict(enumerate(top(SearchOptions(k=DEPTH, mode="dense", exact=True))))
    rows = {"exact": {"latency": latency({"exact": True})}}
    for ef in efs:
        ranked = dict(enumerate(top(SearchOptions(k=DEPTH, mode="dense", hnsw_ef=ef))))
        rows[f"ef{ef}"] = {
            "overlap@10": _overlap(ranked, exact, 10),
            "overlap@100": _overlap(ranked, exact, 100),
            "latency": latency({"hnsw_ef": ef}),
        }
        print(f"ef{ef}", rows[f"ef{ef}"], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--ef", default="100,200,400", help="comma-separated beam widths to measure")
    ap.add_argument("--out", type=Path, required=True, help="folder for <dataset>.hnsw_ef.json")
    ap.add_argument("--overlap-queries", type=Path, help="only the label-free overlap, with these queries")
    ap.add_argument("--max-queries", type=int, default=1000, help="of --overlap-queries (the first N)")
    args = ap.parse_args()
    efs = [int(x) for x in args.ef.split(",")]
    ds = load_beir(args.dataset)
    kr = Kret()
    info = kr.resolve_model()
    name = eval_collection_name(
        ds, info.fingerprint, kr.settings.chunk_tokens, f"{kr.settings.runtime}-{kr.settings.precision}"
    )
    kr.index([args.dataset / "corpus.jsonl"], collection=name, model=info.source or info.path, mirror=True)
    searcher = kr.open(name)
    qids = list(ds.queries)
    qrels = {q: ds.qrels[q] for q in qids}
    out: dict = {
        "dataset": ds.name,
        "data_hash": ds.data_hash,
        "collection": name,
        "model": {"name": info.name, "fingerprint": info.fingerprint},
        "queries": len(qids),
        "depth": DEPTH,
    }
    try:
        out["chunks"] = searcher.collection.store.count_chunks()
        if args.overlap_queries:
            lines = args.overlap_queries.read_text(encoding="utf-8").splitlines()[: args.max_queries]
            texts = [(row.get("query") or row["text"]) for row in map(json.loads, lines)]
            out.update(
                queries=len(texts),
                queries_file=str(args.overlap_queries),
                queries_sha256=hashlib.sha256("\n".join(lines).encode()).hexdigest(),
                rows=_overlap_only(searcher, texts, efs),
            )
            _write(args.out / f"{ds.name}.hnsw_ef.overlap.json", out)
            return
        t0 = time.perf_counter()
        vectors = searcher.embedder.encode_queries([ds.queries[q] for q in qids])
        out["embed_queries_s"] = round(time.perf_counter() - t0, 1)
        settings = [("exact", {"exact": True})] + [(f"ef{ef}", {"hnsw_ef": ef}) for ef in efs]
        ndcg: dict[str, np.ndarray] = {}
        chunks: dict[str, dict] = {}
        rows = {}
        for label, knobs in settings:
            for mode in ("dense", "hybrid"):
                opts = searcher.options(SearchOptions(k=DEPTH, mode=mode, **knobs))
                t0 = time.perf_counter()
                run, chunk_ids = _runs(searcher, ds, qids, vectors, opts)
                wall = time.perf_counter() - t0
                key = f"{mode}-{label}"
                ndcg[key] = _ndcg(evaluate(qrels, run, ks=(10,), metrics=("ndcg",)), qids)
                chunks[key] = chunk_ids
                lo, hi = bootstrap_ci(ndcg[key])
                rows[key] = {
                    "ndcg@10": round(float(ndcg[key].mean()), 4),
                    "ci": [round(lo, 4), round(hi, 4)],
                    "all_queries_s": round(wall, 1),
                    **_latency(searcher, [ds.queries[q] for q in qids], vectors, opts),
                }
                print(key, rows[key], flush=True)
    finally:
        searcher.collection.close()
    for key, row in rows.items():
        mode, label = key.split("-", 1)
        if label == "exact":
            continue
        exact = f"{mode}-exact"
        test = paired_test_many({"values": ndcg[exact]}, {"values": ndcg[key]}, {"ndcg": MEAN})["ndcg"]
        row["minus exact"] = {
            "delta": round(test.delta, 4),
            "ci": [round(test.ci_low, 4), round(test.ci_high, 4)],
            "p": test.p_value,
        }
        if mode == "dense":
            row["overlap@10"] = _overlap(chunks[key], chunks[exact], 10)
            row["overlap@100"] = _overlap(chunks[key], chunks[exact], 100)
    out["rows"] = rows
    _write(args.out / f"{ds.name}.hnsw_ef.json", out)


def _write(path: Path, out: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
