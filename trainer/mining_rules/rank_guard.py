"""``rank_guard``: a candidate that BM25 *and* the dense model both rank above the positive is suspect.

Inside the rank window (``--range``), a negative that beats the labelled positive in one retriever is what a
hard negative is; one that beats it in two retrievers that fail in different ways (lexical and semantic) is
more likely an unlabelled positive — a paragraph that also answers the question. Rank-based, so it needs no
score scale at all. A document beyond a list's depth counts as ranked below everything in it; a positive
beyond the depth counts as ranked below every listed candidate.
"""

from __future__ import annotations

from .base import Candidate, QueryContext, Rule

_BEYOND = 10**9


class RankGuardRule(Rule):
    name = "rank_guard"
    needs = frozenset({"dense", "sparse"})

    def keep(self, ctx: QueryContext, cand: Candidate) -> bool:
        assert ctx.dense_rank is not None and ctx.sparse_rank is not None
        pos_dense = ctx.dense_rank.get(ctx.positive_doc_id, _BEYOND)
        pos_sparse = ctx.sparse_rank.get(ctx.positive_doc_id, _BEYOND)
        above_dense = ctx.dense_rank.get(cand.doc_id, _BEYOND + 1) < pos_dense
        above_sparse = ctx.sparse_rank.get(cand.doc_id, _BEYOND + 1) < pos_sparse
        return not (above_dense and above_sparse)
