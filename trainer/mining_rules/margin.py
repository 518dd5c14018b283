"""``margin``: drop a candidate scoring above ``margin`` × the positive (TopK-PercPos, NV-Retriever).

Scale-dependent: it was designed for models whose unrelated passages score near 0. On e5, where everything
scores 0.7–1.0, 0.95 × the positive lies inside the band of ordinary hard negatives (issue 16: it removed 48 %
of the candidates and every candidate of the hardest queries). Kept for models with a wide score scale.
"""

from __future__ import annotations

from typing import Any

from .base import Candidate, QueryContext, Rule


class MarginRule(Rule):
    name = "margin"

    def __init__(self, margin: float = 0.95) -> None:
        self.margin = margin

    def bar(self, pos_score: float) -> float:
        """``margin`` x the positive's score, generalised so a negative positive score still gives a bar below it."""
        return pos_score - (1.0 - self.margin) * abs(pos_score)

    def keep(self, ctx: QueryContext, cand: Candidate) -> bool:
        return cand.score <= self.bar(ctx.pos_score)

    def describe(self) -> dict[str, Any]:
        return {"rule": self.name, "margin": self.margin}
