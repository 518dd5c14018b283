"""What a mining rule sees and answers; the rules themselves are one module each (see ``__init__``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass
class QueryContext:
    """One training query as the rules see it.

    ``pos_score`` and every candidate's ``score`` are dense cosines (query . passage, unit vectors), also in
    hybrid mode (a fused score is rank-based and says nothing about closeness). ``random_score`` is the mean
    cosine of the query against a seeded sample of random passages of the collection: what "unrelated" scores
    for *this* query under *this* model. ``dense_rank`` / ``sparse_rank`` map a document id to its 1-based rank
    in the dense / BM25 lists (absent = beyond the list); they are filled only when a rule needs them.
    """

    qid: str
    positive_doc_id: str
    pos_score: float
    random_score: float | None = None
    served_doc_ranks: dict[str, int] = field(default_factory=dict)  # doc -> best rank in the served list
    dense_rank: dict[str, int] | None = None
    sparse_rank: dict[str, int] | None = None


@dataclass
class Candidate:
    rank: int  # 1-based rank in the served list
    chunk_id: str
    doc_id: str
    score: float  # dense cosine to the query


class Rule:
    """A false-negative guard: ``drop_query`` removes a whole query, ``keep`` one candidate.

    ``needs`` names the extra evidence the miner must compute for the rule: ``"random"`` (random-passage
    scores), ``"dense"`` and ``"sparse"`` (the two branch's own rankings).
    """

    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset()
    scope: ClassVar[str] = "candidate"  # or "query"

    def drop_query(self, ctx: QueryContext) -> bool:  # noqa: ARG002 - a candidate rule keeps every query
        return False

    def keep(self, ctx: QueryContext, cand: Candidate) -> bool:  # noqa: ARG002 - a query rule keeps all
        return True

    def describe(self) -> dict[str, Any]:
        return {"rule": self.name}
