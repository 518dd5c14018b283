"""Reciprocal rank fusion, run inside Qdrant (``Fusion.Rrf`` with kret's explicit k and optional weights).

Qdrant's weighted form (qdrant-edge ``reciprocal_rank_fusion.rs``) is ``Σ_b 1/((pos_b+1)/w_b + k − 1)`` with
0-based ``pos_b``: a weight stretches a branch's ranks rather than scaling its contribution. Rank-only, so it
discards how far a branch's top hit is ahead — why it lost to both branches on the Korean sets
(bench/README.md §2b).
"""

from __future__ import annotations

from kret.engine.fusion.base import FusionInput, FusionMethod, QdrantFusion, ranked


class Rrf(FusionMethod):
    name = "rrf"
    summary = "reciprocal rank fusion in Qdrant (rrf_k, dense/sparse weights)"
    in_qdrant = True
    uses_weights = True

    def qdrant(self, rrf_k: int, weights: tuple[float, float]) -> QdrantFusion:
        return QdrantFusion("rrf", k=rrf_k, weights=None if tuple(weights) == (1.0, 1.0) else tuple(weights))

    def fuse(self, inp: FusionInput) -> list[tuple[str, float]]:
        out: dict[str, float] = {}
        for hits, w in ((inp.dense, inp.weights[0]), (inp.sparse, inp.weights[1])):
            for pos, (pid, _score) in enumerate(hits):
                out[pid] = out.get(pid, 0.0) + 1.0 / ((pos + 1) / w + inp.rrf_k - 1)
        return ranked(out)
