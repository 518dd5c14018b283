"""``consistency``: ranking-consistency filtering (KaLM-Embedding; E5's consistency filter).

A query whose labelled positive the current model does not even put in its top ``k`` is more often a bad
label (a question about another paragraph, a positive that lost its answer in chunking) than a lesson, and
training on it pulls the model towards noise. The whole query is dropped. Measured on the served list, so
it judges the retrieval the user gets.
"""

from __future__ import annotations

from typing import Any

from .base import QueryContext, Rule


class ConsistencyRule(Rule):
    name = "consistency"
    scope = "query"

    def __init__(self, top_k: int = 10) -> None:
        self.top_k = top_k

    def drop_query(self, ctx: QueryContext) -> bool:
        rank = ctx.served_doc_ranks.get(ctx.positive_doc_id)
        return rank is None or rank > self.top_k

    def describe(self) -> dict[str, Any]:
        return {"rule": self.name, "top_k": self.top_k}
