"""``rescaled``: the TopK-PercPos margin on a score rescaled to the query's own scale.

A cosine means little on its own: e5 scores an unrelated passage ~0.75, a model with a wide scale ~0.0. So
each candidate's score is measured on the scale running from what a *random* passage scores for this query
(0) to what the positive scores (1): ``rel = (s − random) / (pos − random)``, and a candidate is dropped when
``rel > max_rel`` (default 0.95, NV-Retriever's 95 % on the scale where it was meant: unrelated = 0). On a
model whose random passages score ~0 this is the plain margin; on e5 it stops treating the whole top of the
list as suspect. A query whose positive scores no better than random passages has no scale and keeps no
negatives (its label is likely wrong).
"""

from __future__ import annotations

from typing import Any

from .base import Candidate, QueryContext, Rule


def relative_score(score: float, pos_score: float, random_score: float) -> float:
    """``score`` on the [random, positive] scale of one query; +inf when the positive is not above random."""
    gap = pos_score - random_score
    if gap <= 1e-6:
        return float("inf")
    return (score - random_score) / gap


class RescaledRule(Rule):
    name = "rescaled"
    needs = frozenset({"random"})

    def __init__(self, max_rel: float = 0.95) -> None:
        self.max_rel = max_rel

    def keep(self, ctx: QueryContext, cand: Candidate) -> bool:
        assert ctx.random_score is not None, "the miner fills random_score for rules that need it"
        return relative_score(cand.score, ctx.pos_score, ctx.random_score) <= self.max_rel

    def describe(self) -> dict[str, Any]:
        return {"rule": self.name, "max_rel": self.max_rel}
