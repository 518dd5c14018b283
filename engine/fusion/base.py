"""What a fusion method is: two branch lists in, one fused list out.

A method either runs inside Qdrant (``in_qdrant``: the store sends the branches as prefetches with a
``QdrantFusion`` and Qdrant fuses them, as for RRF and DBSF) or on the client (the store runs both branches
in one batch request, hands their ranked ``(id, score)`` lists to :meth:`FusionMethod.fuse`, and fetches the
payloads of the fused top-k). Every method also has a client-side ``fuse`` — for in-Qdrant methods it is a
replay of Qdrant's formula, used by the fusion study (``bench/fusion_replay.py``) and the calibration, and
pinned against Qdrant by the tests — so a study and the served path compute the same thing.

Determinism: ``fuse`` returns hits ordered by (-score, id), so equal fused scores never depend on dict or
Qdrant ordering.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from kret.errors import UserInputError

#: One branch's ranked result: (point id, score), best first.
BranchList = Sequence[tuple[str, float]]


@dataclass(frozen=True)
class QdrantFusion:
    """A fusion Qdrant performs itself; each store turns it into its client's query object."""

    kind: Literal["rrf", "dbsf"]
    k: int = 60
    weights: tuple[float, float] | None = None  # (dense, sparse); None = Qdrant's unweighted form


@dataclass(frozen=True)
class FusionInput:
    """What a client-side method may look at for one query: the branches and cheap query facts."""

    dense: BranchList
    sparse: BranchList
    n_terms: int = 0  # distinct Kiwi content terms of the query (0 when unknown)
    rrf_k: int = 60
    weights: tuple[float, float] = (1.0, 1.0)
    params: Mapping[str, float] = field(default_factory=dict)


class FusionMethod:
    """Base of every fusion method; subclasses set ``name`` and implement :meth:`fuse`."""

    name: ClassVar[str]
    summary: ClassVar[str]
    in_qdrant: ClassVar[bool] = False
    #: whether ``dense_weight``/``sparse_weight`` mean something to this method
    uses_weights: ClassVar[bool] = False
    #: tunable parameters with their defaults (``params`` of a search or a calibration)
    defaults: ClassVar[Mapping[str, float]] = {}

    def qdrant(self, rrf_k: int, weights: tuple[float, float]) -> QdrantFusion:
        raise NotImplementedError(f"fusion {self.name!r} runs on the client, not inside Qdrant")

    def fuse(self, inp: FusionInput) -> list[tuple[str, float]]:
        raise NotImplementedError

    def check_params(self, params: Mapping[str, Any]) -> dict[str, float]:
        """The method's parameters with defaults filled in; unknown names are a user error."""
        unknown = set(params) - set(self.defaults)
        if unknown:
            known = ", ".join(sorted(self.defaults)) or "none"
            raise UserInputError(
                f"fusion {self.name!r} has no parameter(s) {', '.join(sorted(unknown))} (known: {known})"
            )
        out = dict(self.defaults)
        for key, value in params.items():
            try:
                out[key] = float(value)
            except (TypeError, ValueError):
                raise UserInputError(f"fusion parameter {key} must be a number, got {value!r}") from None
            if out[key] != out[key] or out[key] in (float("inf"), float("-inf")):
                raise UserInputError(f"fusion parameter {key} must be finite, got {value!r}")
        return out


def ranked(scores: Mapping[str, float]) -> list[tuple[str, float]]:
    """Fused scores as a list, best first, ties broken by id (the determinism every method promises)."""
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))
