"""Value types shared by the engine's store, search and callers.

The engine owns these; the application's settings module imports them from here, so the engine never needs
the application settings to name a search mode or check a weight.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

SearchMode = Literal["dense", "sparse", "hybrid"]
FusionKind = str  # a name in kret.engine.fusion's registry (validated against it)

# How long-running work reports itself, all keywords so each caller sends only what it knows:
# ``stage=`` ("read", "embed", "query", "pairs"…) with ``total=`` to start a bar and ``advance=`` to move it,
# ``note=`` a one-line status message, plus counters a view may show (``chunks=``, ``tokens=``, ``mining=``).
ProgressFn = Callable[..., None]


def positive_finite(name: str, value: float) -> float:
    """The one check of a weight-like number (settings, CLI flags and ``SearchOptions`` all use it).

    NaN and infinity pass ``> 0``-style checks in surprising ways (``inf > 0``; NaN compares false and
    then turns every fused score into NaN, which is not even valid JSON), so they are refused by name.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if value <= 0:
        raise ValueError(f"{name} must be greater than 0, got {value}")
    return float(value)


@dataclass(frozen=True)
class SparseVec:
    """A sparse term vector: term ids (stable 32-bit hashes of Kiwi terms) and weights."""

    indices: list[int]
    values: list[float]

    def __len__(self) -> int:
        return len(self.indices)


@dataclass
class StoredPoint:
    """A chunk as the store keeps it: id, vectors and payload."""

    id: str
    dense: list[float] | None
    sparse: SparseVec | None
    payload: dict[str, Any]


@dataclass
class BranchScore:
    score: float
    rank: int  # 1-based


@dataclass
class Hit:
    """One search result. ``score`` is the fused score in hybrid mode (DBSF: sum of per-branch normalised scores;
    RRF: rank-based, compare ranks,
    not values), and ``branches`` holds each branch's own score and rank where the chunk came from it."""

    rank: int
    score: float
    chunk_id: str
    doc_id: str
    text: str
    path: str = ""
    title: str = ""
    chunk_index: int = 0
    payload: dict[str, Any] = field(default_factory=dict)
    branches: dict[str, BranchScore] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "score": self.score,
            "doc_id": self.doc_id,
            "chunk_id": self.chunk_id,
            "path": self.path,
            "title": self.title,
            "chunk_index": self.chunk_index,
            "text": self.text,
            "branches": {k: {"score": v.score, "rank": v.rank} for k, v in self.branches.items()},
        }


@dataclass
class SearchFilter:
    """Restrictions applied inside Qdrant: path prefix / glob, file types, and exact payload matches."""

    path_prefix: str | None = None
    path_glob: str | None = None
    source_types: list[str] = field(default_factory=list)
    where: dict[str, Any] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not (self.path_prefix or self.path_glob or self.source_types or self.where)
