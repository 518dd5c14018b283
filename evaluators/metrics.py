"""Retrieval metrics at document level: ranx for the standard ones, kret's own code for the two F1s.

Conventions (they match ``shared/docs/baselines.md``, which was cross-checked against pytrec_eval):

- A document is relevant when its qrel score is > 0 (ranx ``rel_lvl=1`` on integer scores). Queries with no
  such qrel are not evaluated (BEIR convention).
- ``ndcg@k``: gain = qrel score (linear, Järvelin & Kekäläinen -- ranx ``ndcg``, *not* ``ndcg_burges``),
  discount log2(rank + 1), ideal DCG from the query's qrels.
- ``recall@k``: relevant documents in the top k / relevant documents of the query (not min(k, R)).
- ``precision@k``: relevant documents in the top k / k, even when fewer than k documents were returned
  (trec_eval ``P_k``; a short result list is not rewarded).
- ``mrr@k``: 1/rank of the first relevant document within the top k, else 0.
- ``map@k``: sum of precision at each relevant rank within the top k / relevant documents of the query
  (trec_eval ``map_cut``).
- ``hit_rate@k``: 1 when any relevant document is in the top k (trec_eval ``success``).
- ``f1_per_query_mean@k``: per-query F1 = 2PR/(P+R) (0 without a hit), then the mean over queries.
- ``f1_kure@k``: 2·mean(P)·mean(R)/(mean(P)+mean(R)) -- a corpus-level statistic computed *from the means*,
  as the KURE leaderboard does. It has no per-query values; its confidence interval must resample queries
  and recompute it (see ``statistic_for``). The two F1s agree when every query has one positive and differ
  when queries have several.

Ties: ranx orders a query's results with an unstable numba argsort over float scores and hashes document
ids, so equal scores would come back in an arbitrary order. ``evaluate`` therefore ranks every query itself
and hands ranx strictly decreasing rank scores. The default tie-break is document id ascending: the numbers
are then deterministic and independent of the order in which a store returned tied hits. Ties are not
rare: BM25 over Kiwi morphemes gives 19 korquad-dev queries a tied top 2, enough to move NDCG@1 by 0.0003
depending on the tie-break. ``tie_break="input"`` keeps the order of the run's own dicts instead (what a
reference system's ranked list implies; it reproduces baselines.md to the fourth decimal).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from kret.errors import UserInputError
from kret.evaluators.stats import Statistic

__all__ = [
    "AGGREGATION_NOTE",
    "CORPUS_LEVEL_METRICS",
    "DEFAULT_KS",
    "DEFAULT_METRICS",
    "PER_QUERY_METRICS",
    "EvalResult",
    "Qrels",
    "Run",
    "TieBreak",
    "chunks_to_docs",
    "evaluate",
    "kure_f1",
    "metric_name",
    "rank_run",
    "split_metric_name",
    "statistic_for",
]

Run = dict[str, dict[str, float]]
"""query id -> document id -> score (higher is better)."""
Qrels = dict[str, dict[str, int]]
"""query id -> document id -> graded relevance (> 0 is relevant)."""

AGGREGATION_NOTE = "document score = max over its chunks"

_RANX_NAMES = {
    "ndcg": "ndcg",
    "recall": "recall",
    "precision": "precision",
    "mrr": "mrr",
    "map": "map",
    "hit_rate": "hit_rate",
}
PER_QUERY_METRICS: tuple[str, ...] = (*_RANX_NAMES, "f1_per_query_mean")
CORPUS_LEVEL_METRICS: tuple[str, ...] = ("f1_kure",)
DEFAULT_METRICS: tuple[str, ...] = PER_QUERY_METRICS + CORPUS_LEVEL_METRICS
DEFAULT_KS: tuple[int, ...] = (1, 3, 5, 10)


def metric_name(metric: str, k: int) -> str:
    return f"{metric}@{k}"


def split_metric_name(name: str) -> tuple[str, int]:
    """Inverse of ``metric_name``; raises ``UserInputError`` on names like ``ndcg`` or ``ndcg@x``."""
    metric, sep, k_text = name.rpartition("@")
    if not sep or not metric or not k_text.isdigit():
        raise UserInputError(f"metric name {name!r} is not of the form <metric>@<k>, e.g. ndcg@10")
    return metric, int(k_text)


def chunks_to_docs(hits_per_query: Mapping[str, Iterable[tuple[str, float]]]) -> Run:
    """Collapse chunk-level hits to a document-level run: document score = MAX over its chunks.

    Benchmarks judge documents, while the engine returns chunks; several chunks of one document must count
    once, and max (not sum) keeps a long document with many mediocre chunks from outranking a short one
    with one excellent chunk. Every report states this aggregation (``AGGREGATION_NOTE``).
    """
    run: Run = {}
    for query_id, hits in hits_per_query.items():
        docs: dict[str, float] = {}
        for doc_id, score in hits:
            score = float(score)
            previous = docs.get(doc_id)
            if previous is None or score > previous:
                docs[doc_id] = score
        run[query_id] = docs
    return run


TieBreak = Literal["doc_id", "input"]


def rank_run(run: Mapping[str, Mapping[str, float]], tie_break: TieBreak = "doc_id") -> dict[str, list[str]]:
    """Each query's documents in evaluation order: score descending, then the tie-break.

    ``"doc_id"``: ties by document id ascending (deterministic whatever order the hits came in).
    ``"input"``: ties keep the order of the query's dict (a stable sort). NaN scores are ranked last so a
    broken score cannot silently land on top.
    """
    if tie_break not in ("doc_id", "input"):
        raise UserInputError(f"tie_break must be 'doc_id' or 'input', got {tie_break!r}")
    by_id = tie_break == "doc_id"

    def key(item: tuple[str, float]) -> tuple[float, str]:
        doc_id, score = item
        score = float(score)
        return (math.inf if math.isnan(score) else -score, doc_id if by_id else "")

    return {q: [d for d, _ in sorted(docs.items(), key=key)] for q, docs in run.items()}


def kure_f1(mean_precision: np.ndarray | float, mean_recall: np.ndarray | float) -> np.ndarray:
    """KURE-style F1 from mean precision and mean recall (vectorised, 0 where both are 0)."""
    p = np.asarray(mean_precision, dtype=np.float64)
    r = np.asarray(mean_recall, dtype=np.float64)
    total = p + r
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 2.0 * p * r / np.where(total > 0, total, 1.0), 0.0)


def _identity(mean: np.ndarray) -> np.ndarray:
    return mean


def statistic_for(name: str) -> Statistic:
    """How a reported metric is computed from per-query columns, for CIs and paired tests.

    Ordinary metrics are the mean of their own column; ``f1_kure@k`` is ``kure_f1(mean(precision@k),
    mean(recall@k))``, so its bootstrap resamples queries and recomputes it -- the only correct CI for a
    ratio of means.
    """
    metric, k = split_metric_name(name)
    if metric == "f1_kure":
        return Statistic((metric_name("precision", k), metric_name("recall", k)), kure_f1)
    if metric in PER_QUERY_METRICS:
        return Statistic((name,), _identity)
    raise UserInputError(f"unknown metric {metric!r}; known: {', '.join(DEFAULT_METRICS)}")


@dataclass(frozen=True)
class EvalResult:
    """Per-query values and means of every metric@k.

    ``per_query`` has one entry per *per-query* metric (``f1_kure@k`` has none: it is corpus-level and only
    appears in ``means``). When an F1 is requested, ``precision@k`` and ``recall@k`` are always in
    ``per_query`` because the F1s -- and the bootstrap of ``f1_kure`` -- are computed from them.
    ``query_ids`` fixes the order used by ``values``.
    """

    ks: tuple[int, ...]
    metrics: tuple[str, ...]
    query_ids: tuple[str, ...]
    per_query: dict[str, dict[str, float]]
    means: dict[str, float]
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def values(self, name: str) -> np.ndarray:
        """Per-query values of one metric as an array in ``query_ids`` order."""
        if name not in self.per_query:
            raise UserInputError(f"no per-query values for {name!r}; have: {', '.join(self.per_query)}")
        column = self.per_query[name]
        return np.fromiter((column[q] for q in self.query_ids), dtype=np.float64, count=len(self.query_ids))


def evaluate(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Mapping[str, float]],
    ks: Sequence[int] = DEFAULT_KS,
    metrics: Sequence[str] = DEFAULT_METRICS,
    tie_break: TieBreak = "doc_id",
) -> EvalResult:
    """Evaluate a document-level run against qrels over every query with a positive qrel.

    A query in the qrels but missing from the run scores 0 on everything (the system found nothing);
    a run query absent from the qrels is ignored. Both cases are counted in ``warnings``. Tied scores are
    ordered by ``tie_break`` (see ``rank_run``).
    """
    ks = _check_ks(ks)
    metrics = _check_metrics(metrics)

    query_ids = [q for q, rels in qrels.items() if any(int(s) > 0 for s in rels.values())]
    if not query_ids:
        raise UserInputError("no query has a relevant document (qrel score > 0); nothing to evaluate")
    warnings: list[str] = []
    n_unjudged = len(qrels) - len(query_ids)
    if n_unjudged:
        warnings.append(f"{n_unjudged} qrels queries have no qrel with score > 0 and were not evaluated")
    missing = [q for q in query_ids if q not in run]
    if missing:
        warnings.append(f"{len(missing)} evaluated queries are missing from the run and score 0")
    extra = sum(1 for q in run if q not in qrels)
    if extra:
        warnings.append(f"{extra} run queries have no qrels and were ignored")

    ranked = rank_run({q: run.get(q, {}) for q in query_ids}, tie_break)
    ranx_families = [m for m in metrics if m in _RANX_NAMES]
    if any(m.startswith("f1_") for m in metrics):
        ranx_families += [m for m in ("precision", "recall") if m not in ranx_families]
    raw = _ranx_per_query(qrels, ranked, query_ids, ranx_families, ks)

    per_query: dict[str, dict[str, float]] = {}
    means: dict[str, float] = {}
    for family in [*ranx_families, *(m for m in metrics if m.startswith("f1_"))]:
        for k in ks:
            name = metric_name(family, k)
            if family == "f1_per_query_mean":
                p, r = raw[metric_name("precision", k)], raw[metric_name("recall", k)]
                values = kure_f1(p, r)  # same formula, applied per query
            elif family == "f1_kure":
                p, r = raw[metric_name("precision", k)], raw[metric_name("recall", k)]
                means[name] = float(kure_f1(np.mean(p), np.mean(r)))
                continue
            else:
                values = raw[name]
            per_query[name] = dict(zip(query_ids, values.tolist(), strict=True))
            means[name] = float(np.mean(values))
    return EvalResult(
        ks=ks,
        metrics=metrics,
        query_ids=tuple(query_ids),
        per_query=per_query,
        means=means,
        warnings=tuple(warnings),
    )


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    if isinstance(ks, int):
        ks = (ks,)
    out = tuple(sorted({int(k) for k in ks}))
    if not out or out[0] < 1 or any(int(k) != k for k in ks):
        raise UserInputError(f"ks must be positive integers, got {list(ks)!r}")
    return out


def _check_metrics(metrics: Sequence[str]) -> tuple[str, ...]:
    if isinstance(metrics, str):
        metrics = (metrics,)
    unknown = [m for m in metrics if m not in DEFAULT_METRICS]
    if unknown or not metrics:
        raise UserInputError(f"unknown metric(s) {unknown!r}; known: {', '.join(DEFAULT_METRICS)}")
    return tuple(dict.fromkeys(metrics))


def _ranx_per_query(
    qrels: Mapping[str, Mapping[str, int]],
    ranked: dict[str, list[str]],
    query_ids: list[str],
    families: list[str],
    ks: tuple[int, ...],
) -> dict[str, np.ndarray]:
    """Per-query ranx values, fed as numba typed lists so ranx sees exactly our ranking.

    Documents get dense integer ids (no string hashing, so no collisions), and each result list carries
    strictly decreasing scores (n - rank), so ranx's own sort cannot reorder ties. Building the typed lists
    ourselves also lets a query with an empty result list be an empty array, which ranx's dict path rejects.
    """
    from numba.typed import List as TypedList
    from ranx import evaluate as ranx_evaluate

    ids: dict[str, int] = {}
    qrels_list = TypedList()
    run_list = TypedList()
    for q in query_ids:
        rels = sorted(
            ((ids.setdefault(d, len(ids)), int(s)) for d, s in qrels[q].items()), key=lambda x: -x[1]
        )
        qrels_list.append(np.array(rels, dtype=np.float64).reshape(-1, 2))
        docs = ranked[q]
        n = len(docs)
        doc_ix = np.fromiter((ids.setdefault(d, len(ids)) for d in docs), dtype=np.float64, count=n)
        run_list.append(np.column_stack((doc_ix, np.arange(n, 0, -1, dtype=np.float64))).reshape(-1, 2))
    names = [metric_name(_RANX_NAMES[f], k) for f in families for k in ks]
    # ranx 0.3.x raises KeyError for a single metric with return_mean=False: always ask for two.
    # The padding is the same metric at another k, so it needs no extra JIT compilation.
    padded = names if len(names) > 1 else [*names, metric_name(_RANX_NAMES[families[0]], ks[0] + 1)]
    scores = ranx_evaluate(qrels_list, run_list, padded, return_mean=False)
    out: dict[str, np.ndarray] = {}
    for family in families:
        for k in ks:
            out[metric_name(family, k)] = np.asarray(
                scores[metric_name(_RANX_NAMES[family], k)], dtype=np.float64
            )
    return out
