"""Distribution-based score fusion, run inside Qdrant (``Fusion.Dbsf``).

Each branch's scores are mapped through its own mean ± 3 standard deviations to [0, 1] (a branch whose
scores are all equal, or that has one hit, maps to 0.5) and the normalised scores are summed. Unlike RRF it keeps how far a
branch's top hit stands out, which is what won on the Korean sets (bench/README.md §2b). Qdrant's DBSF takes
no weights; :func:`normalise` is shared with the client-side methods that weight it.
"""

from __future__ import annotations

import math

from kret.engine.fusion.base import BranchList, FusionInput, FusionMethod, QdrantFusion, ranked


def normalise(hits: BranchList) -> dict[str, float]:
    """Qdrant's DBSF normalisation of one branch (``distr_norm`` in its ``score_fusion.rs``):
    (s − (μ − 3σ)) / 6σ with the *sample* σ (n − 1); one hit, or all scores equal → 0.5."""
    if not hits:
        return {}
    n = len(hits)
    if n == 1:
        return {hits[0][0]: 0.5}
    mean = sum(s for _, s in hits) / n
    sd = math.sqrt(sum((s - mean) ** 2 for _, s in hits) / (n - 1))
    if sd == 0.0:
        return {pid: 0.5 for pid, _ in hits}
    lo, span = mean - 3.0 * sd, 6.0 * sd
    return {pid: (s - lo) / span for pid, s in hits}


def weighted_sum(dense: BranchList, sparse: BranchList, w_dense: float, w_sparse: float) -> dict[str, float]:
    out: dict[str, float] = {}
    for hits, w in ((dense, w_dense), (sparse, w_sparse)):
        for pid, value in normalise(hits).items():
            out[pid] = out.get(pid, 0.0) + w * value
    return out


class Dbsf(FusionMethod):
    name = "dbsf"
    summary = "distribution-based score fusion in Qdrant (no parameters)"
    in_qdrant = True

    def qdrant(self, rrf_k: int, weights: tuple[float, float]) -> QdrantFusion:
        return QdrantFusion("dbsf")

    def fuse(self, inp: FusionInput) -> list[tuple[str, float]]:
        return ranked(weighted_sum(inp.dense, inp.sparse, 1.0, 1.0))
