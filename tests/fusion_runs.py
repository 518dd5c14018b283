"""Synthetic branch runs for the fusion tests: which branch is sure changes from query to query."""

from __future__ import annotations

import numpy as np

from kret.evaluators.fusion_fit import BranchRun


def synthetic_runs(n: int, seed: int, sparse_sure: float = 0.5) -> list[BranchRun]:
    """Queries where one branch is sure (the relevant doc 5σ above its list) and the other is not; a
    distractor sits 3σ high in both. DBSF's equal weights let the distractor win (2 × (½ + 3/6) beats
    ½ + 5/6 + ½); trusting the branch with the bigger top margin finds the relevant doc, and no fixed
    weight can, since which branch is sure changes from query to query."""
    rng = np.random.default_rng(seed)
    runs = []
    for q in range(n):
        docs = [f"q{q}d{i}" for i in range(40)]
        rel, distractor = docs[0], docs[1]
        z = {"dense": rng.normal(0, 1, 40), "sparse": rng.normal(0, 1, 40)}
        z["dense"][1] = z["sparse"][1] = 3.0
        sure = "sparse" if rng.random() < sparse_sure else "dense"
        z[sure][0] = 5.0
        scale = {"dense": (0.8, 0.02), "sparse": (10.0, 1.5)}
        lists = {
            b: sorted(
                ((d, scale[b][0] + scale[b][1] * z[b][i]) for i, d in enumerate(docs)), key=lambda x: -x[1]
            )
            for b in ("dense", "sparse")
        }
        runs.append(
            BranchRun(
                qid=f"q{q}",
                dense=lists["dense"],
                sparse=lists["sparse"],
                doc_of={c: c for c in docs},
                qrels={rel: 1},
                n_terms=3,
            )
        )
        assert distractor in dict(lists["dense"])
    return runs
