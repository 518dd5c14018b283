"""``kret eval``: score the pipeline users run, end to end, on a BEIR dataset.

The corpus is indexed by the same indexer and engine as ``kret index`` (its corpus.jsonl is an ordinary
JSONL input), into a collection named after the dataset hash, the model fingerprint and the chunk size, so a
second run only queries. Every query goes through ``Searcher.search_many``, the path ``kret search`` uses.
Documents split into several chunks are scored at document level: a document's score is the max over its
chunks (stated in every report).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kret.engine.collection import recorded_lexical_text
from kret.engine.search import SearchOptions
from kret.engine.store import DEFAULT_HNSW_EF
from kret.engine.types import ProgressFn
from kret.errors import KretError
from kret.evaluators.beir import BeirDataset, load_beir
from kret.evaluators.metrics import DEFAULT_KS, chunks_to_docs, evaluate
from kret.evaluators.report import EvalReport, ReportedModel

if TYPE_CHECKING:
    from kret.api import Kret


def eval_collection_name(
    dataset: BeirDataset, fingerprint: str, chunk_tokens: int | None, serving: str = ""
) -> str:
    """Keyed by what the vectors depend on (corpus, model, chunking, runtime + precision), not by queries
    or qrels: an eval at int8 must not reuse the vectors of an eval at auto. (The text BM25 indexes is not in
    the key: ``evaluate_dataset`` moves a cached collection to the ``lexical_text`` setting's rule.)"""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", dataset.name).strip("-")[:40] or "dataset"
    tail = f"-{serving}" if serving else ""
    return f"eval-{slug}-{dataset.corpus_hash[:8]}-{fingerprint[:8]}-c{chunk_tokens or 'auto'}{tail}"


def evaluate_dataset(
    kr: Kret,
    dataset_path: str | Path,
    *,
    split: str = "test",
    model: str | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    depth: int = 100,
    batch_size: int = 32,
    latency_sample: int = 100,
    max_queries: int | None = None,
    progress: ProgressFn | None = None,
    **search_overrides: Any,
) -> EvalReport:
    """Index (or reuse) the dataset's corpus, run every query, and return a report with CIs and timings."""
    ds = load_beir(Path(dataset_path), split)
    info = kr.resolve_model(model)
    serving = f"{kr.settings.runtime}-{kr.settings.precision}"
    name = eval_collection_name(ds, info.fingerprint, kr.settings.chunk_tokens, serving)
    corpus = Path(dataset_path) / "corpus.jsonl"

    t0 = time.perf_counter()
    summary = kr.index(
        [corpus], collection=name, model=info.source or info.path, mirror=True, progress=progress
    )
    if summary.interrupted:
        raise KeyboardInterrupt
    index_s = time.perf_counter() - t0

    opts = kr.search_options(k=max(depth, max(ks)), **search_overrides)
    query_ids = list(ds.queries)
    if max_queries:
        query_ids = query_ids[:max_queries]
    searcher = kr.open(name)
    if recorded_lexical_text(searcher.collection.manifest) != kr.settings.lexical_text:
        # Cached under another lexical text rule: new BM25 vectors (Kiwi only; the dense ones are kept).
        t_relex = time.perf_counter()
        try:
            kr.reindex(name, lexical=True, reader=searcher, progress=progress)
        finally:
            searcher.collection.close()
        with contextlib.suppress(KretError):  # a version gc cannot remove stays listed; results do not use it
            kr.gc(name)
        searcher = kr.open(name)
        index_s += time.perf_counter() - t_relex
    try:
        opts = searcher.options(opts)  # the collection's calibrated fusion, if any, as the search will use it
        n_chunks = searcher.collection.store.count_chunks()
        hits_per_query: dict[str, list[tuple[str, float]]] = {}
        if progress:
            progress(stage="query", total=len(query_ids))
        t_q = time.perf_counter()
        for start in range(0, len(query_ids), batch_size):
            ids = query_ids[start : start + batch_size]
            results = searcher.search_many([ds.queries[q] for q in ids], opts)
            for qid, hits in zip(ids, results, strict=True):
                hits_per_query[qid] = [
                    ((h.payload.get("meta") or {}).get("source_id", h.doc_id), h.score) for h in hits
                ]
            if progress:
                progress(stage="query", advance=len(ids))
        batch_s = time.perf_counter() - t_q
        # Latency as a user sees it: one query at a time, top 10.
        single = SearchOptions(**{**opts.__dict__, "k": 10})
        lat = []
        for qid in query_ids[:latency_sample]:
            t = time.perf_counter()
            searcher.search(ds.queries[qid], single)
            lat.append((time.perf_counter() - t) * 1000)
    finally:
        searcher.collection.close()

    qrels = {q: ds.qrels[q] for q in query_ids}
    result = evaluate(qrels, chunks_to_docs(hits_per_query), ks=ks)
    timings = {
        "index_s": round(index_s, 2),
        "docs_embedded": summary.added + summary.updated,
        "n_chunks": n_chunks,
        "queries": len(query_ids),
        "query_batch_qps": round(len(query_ids) / max(batch_s, 1e-9), 2),
        "query_p50_ms": round(float(np.percentile(lat, 50)), 2) if lat else None,
        "query_p95_ms": round(float(np.percentile(lat, 95)), 2) if lat else None,
    }
    fusion = {
        "fusion": opts.fusion,
        "fusion_params": dict(opts.fusion_params),
        "rrf_k": opts.rrf_k,
        "prefetch_k": opts.prefetch_k,
        # the dense branch's HNSW beam width changes results on collections above Qdrant's full-scan size
        "hnsw_ef": opts.hnsw_ef or DEFAULT_HNSW_EF,
        "weights": {"dense": opts.dense_weight, "sparse": opts.sparse_weight},
        "depth": opts.k,
        "collection": name,
        "chunking": searcher.collection.manifest["chunking"],
        "lexical_text": recorded_lexical_text(searcher.collection.manifest),
    }
    return EvalReport.from_result(
        result,
        ds,
        ReportedModel(name=info.name, fingerprint=info.fingerprint),
        opts.mode,
        fusion=fusion,
        timings=timings,
    )
