"""Per-collection fusion calibration (``kret tune``): fit fusion parameters on a user's labelled queries.

Input: a collection and labelled queries for it — a queries file as ``kret train finetune`` takes (query →
positive document id, path or passage, resolved in the collection the same way) or a BEIR-style dataset
folder whose corpus is what the collection holds (qrels by the corpus ids, matched through each chunk's
``meta.source_id``).

Method: every query runs once per branch through the real search path (top ``prefetch_k`` each). Candidate
fusions are replayed client-side (``evaluators.fusion_fit``): the default (``DEFAULT_FUSION``), DBSF with one
fitted branch weight ("weighted"), and the query-adaptive method with all its parameters ("adaptive").
K-fold cross-validation over the queries: each fold's queries are scored with parameters fitted on the other
folds, so every query gets an out-of-fold NDCG@10 per candidate. The best candidate by out-of-fold mean is
compared with the default by the paired randomisation test and a paired bootstrap CI over queries
(``evaluators.stats``). It is **adopted only when that CI lies above 0** (or with ``force``), refitted on
all queries, and written to the collection's manifest under ``"fusion"`` together with the hash of the
labelled data; searches then use it unless a fusion is named explicitly. ``reset_tuning`` removes it.

Caveat, stated in the result: picking the best of three candidates on the same out-of-fold scores makes
the reported gain slightly optimistic; the CI rule is what keeps a lucky pick from being stored.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kret.engine.fusion import DEFAULT_FUSION, get_fusion
from kret.engine.search import Searcher, SearchOptions
from kret.errors import UserInputError
from kret.evaluators.fusion_fit import (
    FAMILIES,
    BranchRun,
    WeightedDbsfTable,
    fit_params,
    folds,
    fused_run,
    method_fuser,
)
from kret.evaluators.metrics import evaluate
from kret.evaluators.stats import paired_test

MANIFEST_KEY = "fusion"
MIN_QUERIES = 20


@dataclass
class TuneResult:
    collection: str
    version: str
    source: str
    data_sha256: str
    queries: int
    folds: int
    default: str
    chosen: str  # the candidate family that won cross-validation
    params: dict[str, float]
    default_ndcg10: float
    chosen_ndcg10: float
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    adopted: bool
    stored: bool
    candidates: dict[str, float] = field(default_factory=dict)  # out-of-fold NDCG@10 per candidate
    seconds: float = 0.0
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# labelled data -----------------------------------------------------------------------------------------
@dataclass
class Labelled:
    """Queries with their relevant documents, keyed the way ``doc_key`` reads a hit."""

    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    source: str
    sha256: str
    by_source_id: bool  # qrels name corpus ids (meta.source_id) rather than collection doc ids


def labelled_from_dataset(path: str | Path, split: str) -> Labelled:
    from kret.evaluators.beir import load_beir

    ds = load_beir(Path(path), split)
    return Labelled(
        dict(ds.queries), {q: dict(r) for q, r in ds.qrels.items()}, str(path), ds.data_hash, True
    )


def labelled_from_queries_file(path: str | Path, searcher: Searcher) -> Labelled:
    """A ``kret train finetune`` queries file, positives resolved in the collection; rows with the same query
    text become one query with all their positives."""
    from kret.trainer.queries import CollectionCatalog, load_queries_file

    catalog = CollectionCatalog.from_store(searcher.collection.store)
    rows, stats = load_queries_file(path, catalog, embedder=searcher.embedder)
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    qid_of: dict[str, str] = {}
    for row in rows:
        if row.positive_doc_id is None:
            continue
        qid = qid_of.setdefault(row.query, f"q{len(qid_of)}")
        queries[qid] = row.query
        qrels.setdefault(qid, {})[row.positive_doc_id] = 1
    return Labelled(queries, qrels, str(path), stats.file_sha256 or "", False)


def doc_key(hit: Any, by_source_id: bool) -> str:
    if by_source_id:
        return (hit.payload.get("meta") or {}).get("source_id", hit.doc_id)
    return hit.doc_id


def collect_branch_runs(
    searcher: Searcher,
    data: Labelled,
    prefetch_k: int = 100,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> list[BranchRun]:
    """Each labelled query's dense and sparse top ``prefetch_k`` through ``Searcher.search_many``."""
    qids = list(data.queries)
    lists: dict[str, list[list[Any]]] = {"dense": [], "sparse": []}
    for start in range(0, len(qids), batch_size):
        batch = qids[start : start + batch_size]
        texts = [data.queries[q] for q in batch]
        for mode in ("dense", "sparse"):
            lists[mode].extend(searcher.search_many(texts, SearchOptions(k=prefetch_k, mode=mode)))
        if progress:
            progress(len(batch))
    runs = []
    for i, qid in enumerate(qids):
        dense, sparse = lists["dense"][i], lists["sparse"][i]
        doc_of = {h.chunk_id: doc_key(h, data.by_source_id) for h in (*dense, *sparse)}
        runs.append(
            BranchRun(
                qid=qid,
                dense=[(h.chunk_id, h.score) for h in dense],
                sparse=[(h.chunk_id, h.score) for h in sparse],
                doc_of=doc_of,
                qrels=data.qrels[qid],
                n_terms=len(searcher.encoder.encode_query(data.queries[qid])),
            )
        )
    return runs


# calibration -----------------------------------------------------------------------------------------------
def _ndcg10(runs: Sequence[BranchRun], fusers: Sequence[Callable[[BranchRun], list]]) -> np.ndarray:
    """Per-query NDCG@10 in ``runs`` order, each query fused by its own fuser (its fold's parameters)."""
    by_qid = {r.qid: f for r, f in zip(runs, fusers, strict=True)}
    run = fused_run(runs, lambda r: by_qid[r.qid](r))
    res = evaluate({r.qid: r.qrels for r in runs}, run, ks=(10,), metrics=("ndcg",))
    order = {q: i for i, q in enumerate(res.query_ids)}
    values = res.values("ndcg@10")
    return np.array([values[order[r.qid]] for r in runs])


def calibrate(
    runs: Sequence[BranchRun], n_folds: int = 5, seed: int = 0, default: str = DEFAULT_FUSION
) -> tuple[str, dict[str, float], dict[str, np.ndarray], np.ndarray]:
    """Out-of-fold NDCG@10 per candidate and the winner refitted on all queries.

    Returns (winning candidate — ``"default"`` or a family of ``FAMILIES`` —, its parameters fitted on every
    query, out-of-fold values per candidate, the default's values). The default wins ties.
    """
    table = WeightedDbsfTable(runs)
    parts = folds(len(runs), n_folds, seed)
    default_method = get_fusion(default)
    base = _ndcg10(runs, [method_fuser(default, default_method.defaults)] * len(runs))
    oof: dict[str, np.ndarray] = {"default": base}
    for family, names in FAMILIES.items():
        per_query: list[dict[str, float]] = [{} for _ in runs]
        for i, test in enumerate(parts):
            train = np.sort(np.concatenate([p for j, p in enumerate(parts) if j != i]))
            params = fit_params(table, train, names)
            for q in test:
                per_query[q] = params
        oof[family] = _ndcg10(runs, [method_fuser("adaptive", p) for p in per_query])
    best = max(oof, key=lambda name: (round(float(oof[name].mean()), 12), name == "default"))
    params = fit_params(table, None, FAMILIES[best]) if best in FAMILIES else dict(default_method.defaults)
    return best, params, oof, base


def tune_searcher(
    searcher: Searcher,
    data: Labelled,
    *,
    n_folds: int = 5,
    seed: int = 0,
    prefetch_k: int = 100,
    store: bool = True,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
) -> TuneResult:
    """Calibrate the open collection's fusion on ``data``; write the choice to its manifest if adopted."""
    started = time.perf_counter()
    if len(data.queries) < max(MIN_QUERIES, 2 * n_folds):
        raise UserInputError(
            f"{len(data.queries)} labelled queries resolved in the collection; calibration needs at least "
            f"{max(MIN_QUERIES, 2 * n_folds)} (more is better: the CI of the gain shrinks with their number)"
        )
    if n_folds < 2:
        raise UserInputError("--folds must be at least 2")
    runs = collect_branch_runs(searcher, data, prefetch_k=prefetch_k, progress=progress)
    best, params, oof, base = calibrate(runs, n_folds, seed)
    chosen = oof[best]
    test = paired_test(base, chosen)
    adopted = best != "default" and test.ci_low > 0
    reason = (
        f"{best} beats {DEFAULT_FUSION} out of fold and its 95 % CI lies above 0"
        if adopted
        else (
            f"no candidate beats {DEFAULT_FUSION} out of fold"
            if best == "default"
            else f"{best}'s gain over {DEFAULT_FUSION} is not significant (95 % CI includes 0)"
        )
    )
    coll = searcher.collection
    result = TuneResult(
        collection=coll.name,
        version=coll.version,
        source=data.source,
        data_sha256=data.sha256,
        queries=len(runs),
        folds=n_folds,
        default=DEFAULT_FUSION,
        chosen=best,
        params=params,
        default_ndcg10=float(base.mean()),
        chosen_ndcg10=float(chosen.mean()),
        delta=test.delta,
        ci_low=test.ci_low,
        ci_high=test.ci_high,
        p_value=test.p_value,
        adopted=adopted,
        stored=False,
        candidates={name: float(v.mean()) for name, v in oof.items()},
        reason=reason,
    )
    if store and (adopted or (force and best != "default")):
        write_tuning(searcher, result)
        result.stored = True
    result.seconds = round(time.perf_counter() - started, 2)
    return result


def manifest_entry(result: TuneResult) -> dict[str, Any]:
    return {
        "method": "adaptive",
        "family": result.chosen,
        "params": result.params,
        "data": {"source": result.source, "sha256": result.data_sha256, "queries": result.queries},
        "cv": {
            "folds": result.folds,
            "default": result.default,
            "default_ndcg10": result.default_ndcg10,
            "ndcg10": result.chosen_ndcg10,
            "delta": result.delta,
            "ci95": [result.ci_low, result.ci_high],
            "p_value": result.p_value,
        },
        "forced": not result.adopted,
        "tuned_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_tuning(searcher: Searcher, result: TuneResult) -> None:
    coll = searcher.collection
    manifest = json.loads(json.dumps(coll.manifest))
    manifest[MANIFEST_KEY] = manifest_entry(result)
    coll.store.write_manifest(manifest)
    coll.manifest = manifest


def reset_tuning(searcher: Searcher) -> dict[str, Any] | None:
    """Remove the collection's calibration; returns what was removed (None if there was none)."""
    coll = searcher.collection
    if MANIFEST_KEY not in coll.manifest:
        return None
    manifest = json.loads(json.dumps(coll.manifest))
    removed = manifest.pop(MANIFEST_KEY)
    coll.store.write_manifest(manifest)
    coll.manifest = manifest
    return removed


def data_sha256(queries: dict[str, str], qrels: dict[str, dict[str, int]]) -> str:
    """A hash of labelled data given in memory (the library API's counterpart of a file's sha256)."""
    blob = json.dumps({"queries": queries, "qrels": qrels}, sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()
