"""Fitting fusion parameters from labelled queries, and scoring fusion methods offline.

Both the fusion study (``bench/fusion_replay.py``) and per-collection calibration (``kret tune``) work on
*branch runs*: each labelled query's dense and sparse top ``prefetch_k`` (ids and scores), fetched once
through the real search path. Any fusion is then a client-side replay — the registry's own ``fuse`` — so a
parameter grid costs no further Qdrant or model calls.

Two scorers, on purpose:

- :func:`score_method` runs the registry's ``fuse`` for each query and scores document-level NDCG@10,
  Recall@10 and MRR@10 with ``evaluators.metrics.evaluate`` — the numbers that get reported.
- :class:`WeightedDbsfTable` is a vectorised NDCG@10 for the weighted-DBSF family (adaptive included),
  thousands of queries in milliseconds, used only to *search* parameters. Its NDCG equals the reported one
  up to the order of exactly tied scores (checked by the tests).

Fitting is a coordinate search over a fixed grid per parameter, starting from all zeros (= DBSF) and
moving a parameter only for a strict gain, so with no signal in the data the result stays DBSF.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from kret.engine.fusion import FusionInput, get_fusion
from kret.engine.fusion.adaptive import Adaptive, features
from kret.engine.fusion.dbsf import normalise
from kret.evaluators.metrics import evaluate

#: Per-parameter grid of the coordinate search (adaptive's parameters; bias alone = fixed-weight DBSF).
GRIDS: dict[str, tuple[float, ...]] = {
    "bias": (-1.5, -1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5),
    "margin": (-0.5, -0.25, -0.1, -0.05, 0.0, 0.05, 0.1, 0.25, 0.5, 1.0),
    "agree": (-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0),
    "terms": (-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0),
}
#: Parameter families a calibration compares: DBSF with one fitted weight, and the full adaptive method.
FAMILIES: dict[str, tuple[str, ...]] = {
    "weighted": ("bias",),
    "adaptive": ("bias", "margin", "agree", "terms"),
}


@dataclass
class BranchRun:
    """One labelled query: its two branch lists (chunk id, score), each chunk's document, its relevance."""

    qid: str
    dense: list[tuple[str, float]]
    sparse: list[tuple[str, float]]
    doc_of: dict[str, str]
    qrels: dict[str, int]
    n_terms: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    def fusion_input(self, params: Mapping[str, float] | None = None, **kw) -> FusionInput:
        return FusionInput(
            dense=self.dense, sparse=self.sparse, n_terms=self.n_terms, params=dict(params or {}), **kw
        )


# reported scores -----------------------------------------------------------------------------------------
def fused_run(
    runs: Sequence[BranchRun], fuse: Callable[[BranchRun], list[tuple[str, float]]], depth: int = 100
):
    """Document-level run (max over chunks) of a fusion, as ``kret eval`` builds it from the top ``depth``."""
    out: dict[str, dict[str, float]] = {}
    for r in runs:
        docs: dict[str, float] = {}
        for cid, score in fuse(r)[:depth]:
            doc = r.doc_of[cid]
            if doc not in docs or score > docs[doc]:
                docs[doc] = score
        out[r.qid] = docs
    return out


def method_fuser(name: str, params: Mapping[str, float] | None = None, **kw) -> Callable[[BranchRun], list]:
    method = get_fusion(name)
    return lambda r: method.fuse(r.fusion_input(params, **kw))


def branch_fuser(branch: str) -> Callable[[BranchRun], list[tuple[str, float]]]:
    return lambda r: list(r.dense if branch == "dense" else r.sparse)


def score_method(runs: Sequence[BranchRun], fuse: Callable[[BranchRun], list[tuple[str, float]]]):
    """NDCG@10, Recall@10, MRR@10 per query (``EvalResult``) of one fusion over the branch runs."""
    qrels = {r.qid: r.qrels for r in runs}
    return evaluate(qrels, fused_run(runs, fuse), ks=(10,), metrics=("ndcg", "recall", "mrr"))


# fast NDCG@10 for the weighted-DBSF family -----------------------------------------------------------------
class WeightedDbsfTable:
    """Branch runs laid out as padded matrices so NDCG@10 of ``w_d·dbsf(dense) + w_s·dbsf(sparse)`` with a
    per-query ``w_s`` is a handful of numpy operations over all queries at once."""

    def __init__(self, runs: Sequence[BranchRun], k: int = 10) -> None:
        self.k = k
        n = len(runs)
        width = max((len({c for c, _ in r.dense} | {c for c, _ in r.sparse}) for r in runs), default=1) or 1
        self.nd = np.zeros((n, width))
        self.ns = np.zeros((n, width))
        self.valid = np.zeros((n, width), dtype=bool)
        self.doc = np.zeros((n, width), dtype=np.int64)
        self.gain = np.zeros((n, width))  # per document slot
        self.idcg = np.zeros(n)
        self.feats = {name: np.zeros(n) for name in ("gap", "agree", "terms")}
        for i, r in enumerate(runs):
            nd, ns = normalise(r.dense), normalise(r.sparse)
            chunks = sorted(set(nd) | set(ns))
            slots: dict[str, int] = {}
            for j, cid in enumerate(chunks):
                self.nd[i, j] = nd.get(cid, 0.0)
                self.ns[i, j] = ns.get(cid, 0.0)
                self.valid[i, j] = True
                self.doc[i, j] = slots.setdefault(r.doc_of[cid], len(slots))
            for d, slot in slots.items():
                self.gain[i, slot] = max(0, int(r.qrels.get(d, 0)))
            ideal = sorted((g for g in r.qrels.values() if g > 0), reverse=True)[:k]
            self.idcg[i] = sum(g / math.log2(p + 2) for p, g in enumerate(ideal))
            for name, value in features(r.fusion_input()).items():
                self.feats[name][i] = value
        self.discount = 1.0 / np.log2(np.arange(k) + 2)
        self.rows = np.repeat(np.arange(n), width).reshape(n, width)

    def __len__(self) -> int:
        return len(self.idcg)

    def sparse_weight(self, params: Mapping[str, float]) -> np.ndarray:
        """Adaptive's w_sparse for every query (same formula as ``adaptive.sparse_weight``)."""
        p = {**Adaptive.defaults, **params}
        gap = self.feats["gap"]
        z = p["bias"] + p["margin"] * gap + p["agree"] * (self.feats["agree"] - 0.5) * gap
        z = z + p["terms"] * self.feats["terms"]
        return 2.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))

    def ndcg(self, ws: np.ndarray, subset: np.ndarray | None = None) -> np.ndarray:
        """Per-query NDCG@k for per-query sparse weights ``ws`` (dense weight 2 − ws)."""
        idx = np.arange(len(self)) if subset is None else subset
        score = (2.0 - ws[idx, None]) * self.nd[idx] + ws[idx, None] * self.ns[idx]
        score = np.where(self.valid[idx], score, -np.inf)
        docs = np.full(score.shape, -np.inf)
        np.maximum.at(docs, (self.rows[: len(idx)], self.doc[idx]), score)
        k = min(self.k, docs.shape[1])
        top = np.argsort(-docs, axis=1, kind="stable")[:, :k]
        top_scores = np.take_along_axis(docs, top, axis=1)
        gains = np.where(np.isfinite(top_scores), np.take_along_axis(self.gain[idx], top, axis=1), 0.0)
        dcg = gains @ self.discount[:k]
        idcg = self.idcg[idx]
        return np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)


def fit_params(
    table: WeightedDbsfTable,
    subset: np.ndarray | None = None,
    names: Sequence[str] = FAMILIES["adaptive"],
    sweeps: int = 3,
    query_weights: np.ndarray | None = None,
) -> dict[str, float]:
    """Coordinate search over ``GRIDS`` maximising mean NDCG@10 on ``subset``; starts at DBSF (all 0).

    ``query_weights`` (aligned with ``subset``) weigh queries, e.g. 1/size of their set so that fitting on
    several sets gives each set the same say. A move must gain more than 1e-9, and among equal scores the
    value nearest 0 wins, so parameters the data say nothing about stay at 0.
    """
    idx = np.arange(len(table)) if subset is None else subset
    w = np.full(len(idx), 1.0 / len(idx)) if query_weights is None else query_weights / query_weights.sum()

    def objective(p: Mapping[str, float]) -> float:
        return float(table.ndcg(table.sparse_weight(p), idx) @ w)

    params = dict.fromkeys(FAMILIES["adaptive"], 0.0)
    best = objective(params)
    for _ in range(sweeps):
        moved = False
        for name in names:
            for value in sorted(GRIDS[name], key=abs):
                if value == params[name]:
                    continue
                trial = {**params, name: value}
                score = objective(trial)
                if score > best + 1e-9:
                    best, params, moved = score, trial, True
        if not moved:
            break
    return params


def halves(n: int, seed: int = 0) -> list[np.ndarray]:
    """Two disjoint random halves of ``n`` queries (seeded): the within-set 2-fold split."""
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(perm[: n // 2]), np.sort(perm[n // 2 :])]


def folds(n: int, k: int, seed: int = 0) -> list[np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(perm[i::k]) for i in range(k)]
