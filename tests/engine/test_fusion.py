"""Fusion methods on hand-made score lists, the registry, and the offline fitting used by `kret tune`."""

from __future__ import annotations

import random

import numpy as np
import pytest
from fusion_runs import synthetic_runs

from kret.engine.fusion import DEFAULT_FUSION, FusionInput, fusion_names, get_fusion
from kret.engine.fusion.adaptive import agreement, features, margin, sparse_weight
from kret.engine.fusion.dbsf import normalise
from kret.errors import ConfigError, UserInputError
from kret.evaluators.fusion_fit import (
    BranchRun,
    WeightedDbsfTable,
    fit_params,
    halves,
    method_fuser,
    score_method,
)
from kret.settings import load_settings

DBSF, RRF, ADAPTIVE = (get_fusion(n) for n in ("dbsf", "rrf", "adaptive"))


def fuse(method, dense, sparse, **kw):
    return method.fuse(FusionInput(dense=dense, sparse=sparse, **kw))


# registry ------------------------------------------------------------------------------------------------
def test_registry_names_and_unknown() -> None:
    assert {"dbsf", "rrf", "adaptive"} <= set(fusion_names())
    assert DEFAULT_FUSION in fusion_names()
    with pytest.raises(UserInputError, match="unknown fusion 'nope'"):
        get_fusion("nope")


def test_settings_validate_against_the_registry() -> None:
    assert load_settings(fusion="adaptive").fusion == "adaptive"
    assert load_settings().fusion is None  # None: the collection's calibration, else the default
    with pytest.raises(ConfigError, match="unknown fusion"):
        load_settings(fusion="nope")


def test_params_are_checked() -> None:
    assert ADAPTIVE.check_params({"bias": "0.5"})["bias"] == 0.5
    with pytest.raises(UserInputError, match="no parameter"):
        ADAPTIVE.check_params({"bais": 1})
    with pytest.raises(UserInputError, match="finite"):
        ADAPTIVE.check_params({"bias": float("nan")})
    with pytest.raises(UserInputError, match="no parameter"):
        DBSF.check_params({"bias": 1})


# DBSF ----------------------------------------------------------------------------------------------------
def test_dbsf_normalisation_by_hand() -> None:
    # mean 2, sample sd 1: [μ − 3σ, μ + 3σ] = [−1, 5]
    assert normalise([("a", 3.0), ("b", 2.0), ("c", 1.0)]) == pytest.approx(
        {"a": 4 / 6, "b": 3 / 6, "c": 2 / 6}
    )
    assert normalise([("a", 7.0), ("b", 7.0)]) == {"a": 0.5, "b": 0.5}  # identical scores
    assert normalise([("a", 3.0)]) == {"a": 0.5}  # one hit: Qdrant's rule
    assert normalise([]) == {}


def test_dbsf_sums_branches_and_handles_an_empty_branch() -> None:
    dense = [("a", 3.0), ("b", 2.0), ("c", 1.0)]
    sparse = [("c", 10.0), ("d", 0.0)]  # mean 5, sd √50
    out = dict(fuse(DBSF, dense, sparse))
    sd = 50**0.5
    assert out["c"] == pytest.approx(2 / 6 + (10 - (5 - 3 * sd)) / (6 * sd))
    assert out["d"] == pytest.approx((0 - (5 - 3 * sd)) / (6 * sd))
    assert [pid for pid, _ in fuse(DBSF, dense, [])] == ["a", "b", "c"]
    assert [pid for pid, _ in fuse(DBSF, [], dense)] == ["a", "b", "c"]
    assert fuse(DBSF, [], []) == []


def test_ties_are_broken_by_id_whatever_the_input_order() -> None:
    dense = [("b", 1.0), ("a", 1.0), ("c", 1.0)]
    sparse = [("c", 2.0), ("a", 2.0), ("b", 2.0)]
    expected = ["a", "b", "c"]  # every fused score equal: 0.5 + 0.5
    for method in (DBSF, ADAPTIVE):
        for _ in range(5):
            d, s = dense[:], sparse[:]
            random.shuffle(d)
            random.shuffle(s)
            assert [pid for pid, _ in fuse(method, d, s)] == expected


# RRF -----------------------------------------------------------------------------------------------------
def test_rrf_by_hand() -> None:
    dense = [("a", 0.9), ("b", 0.8)]
    sparse = [("b", 5.0), ("c", 4.0)]
    out = dict(fuse(RRF, dense, sparse, rrf_k=60))
    assert out["a"] == pytest.approx(1 / 60)
    assert out["b"] == pytest.approx(1 / 61 + 1 / 60)
    assert out["c"] == pytest.approx(1 / 61)
    weighted = dict(fuse(RRF, dense, sparse, rrf_k=60, weights=(2.0, 1.0)))
    assert weighted["a"] == pytest.approx(1 / (1 / 2 + 59))  # Qdrant: 1/((pos+1)/w + k − 1)


# adaptive ------------------------------------------------------------------------------------------------
def test_adaptive_signals_by_hand() -> None:
    hits = [("a", 4.0), ("b", 2.0), ("c", 0.0)]  # sd 2: margin (4 − 2)/2
    assert margin(hits) == pytest.approx(1.0)
    assert margin([("a", 1.0)]) == 0.0 and margin([("a", 1.0), ("b", 1.0)]) == 0.0
    assert agreement([("a", 1.0), ("b", 1.0)], [("b", 1.0), ("x", 1.0)]) == pytest.approx(0.1)
    assert agreement([], [("b", 1.0)]) == 0.0
    f = features(FusionInput(dense=[("a", 1.0), ("b", 1.0)], sparse=hits, n_terms=5))
    assert f["gap"] == pytest.approx(1.0)
    assert sparse_weight(f, dict.fromkeys(("bias", "margin", "agree", "terms"), 0.0)) == pytest.approx(1.0)
    assert sparse_weight(f, {"bias": 0.0, "margin": 100.0, "agree": 0.0, "terms": 0.0}) == pytest.approx(2.0)


def test_adaptive_with_zero_parameters_is_dbsf() -> None:
    rng = random.Random(1)
    for _ in range(20):
        dense = [(f"d{i}", rng.random()) for i in range(rng.randint(0, 30))]
        sparse = [(f"d{rng.randint(0, 40)}", rng.random() * 10) for _ in range(rng.randint(0, 30))]
        sparse = list(dict(sparse).items())
        dense.sort(key=lambda x: -x[1])
        sparse.sort(key=lambda x: -x[1])
        a, b = fuse(ADAPTIVE, dense, sparse), fuse(DBSF, dense, sparse)
        assert [p for p, _ in a] == [p for p, _ in b]
        assert [s for _, s in a] == pytest.approx([s for _, s in b])


def test_adaptive_follows_the_surer_branch() -> None:
    # dense: flat, prefers x; sparse: one hit far ahead, prefers y
    dense = [("x", 0.83), ("y", 0.82)] + [(f"n{i}", 0.80 - i * 0.001) for i in range(20)]
    sparse = [("y", 30.0), ("x", 3.0)] + [(f"m{i}", 2.0 - i * 0.01) for i in range(20)]
    params = {"margin": 1.0}
    assert fuse(ADAPTIVE, dense, sparse, params=params)[0][0] == "y"
    assert fuse(ADAPTIVE, dense, sparse, params={"bias": -30.0})[0][0] == "x"  # w_sparse → 0
    # one empty branch: the other's order, whatever the parameters
    assert [p for p, _ in fuse(ADAPTIVE, dense, [], params={"bias": 5.0})][:2] == ["x", "y"]


# offline fitting ---------------------------------------------------------------------------------------------
def test_fast_table_matches_the_reported_scorer() -> None:
    runs = synthetic_runs(60, seed=3)
    table = WeightedDbsfTable(runs)
    for params in ({}, {"bias": 0.7}, {"margin": 0.25, "bias": -0.3}):
        fast = table.ndcg(table.sparse_weight(params))
        slow = score_method(runs, method_fuser("adaptive", params)).values("ndcg@10")
        assert fast == pytest.approx(slow, abs=1e-9)


def test_fit_finds_the_signal_and_stays_put_without_one() -> None:
    runs = synthetic_runs(200, seed=5)
    table = WeightedDbsfTable(runs)
    a, b = halves(len(table), seed=0)
    params = fit_params(table, a)
    assert params["margin"] > 0  # trust sparse when its top hit stands out
    base = table.ndcg(table.sparse_weight({}), b).mean()
    assert table.ndcg(table.sparse_weight(params), b).mean() > base + 0.1  # and it carries to the other half
    assert fit_params(table, a, names=("bias",))["margin"] == 0.0  # a family fits only its own parameters
    # all queries identical in their signals and outcome → nothing to gain → DBSF
    same = [
        BranchRun("q", [("a", 1.0), ("b", 0.5)], [("a", 3.0), ("b", 1.0)], {"a": "a", "b": "b"}, {"a": 1})
    ] * 10
    flat = WeightedDbsfTable(same)
    assert fit_params(flat) == dict.fromkeys(("bias", "margin", "agree", "terms"), 0.0)
    assert np.all(flat.ndcg(flat.sparse_weight({})) == 1.0)
