"""Metric values against hand computation, the two F1s, statistics, reports, comparison and plotting."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from kret.errors import UserInputError
from kret.evaluators.metrics import (
    chunks_to_docs,
    evaluate,
    kure_f1,
    rank_run,
    statistic_for,
)
from kret.evaluators.report import (
    DatasetInfo,
    EvalReport,
    ReportedModel,
    compare_reports,
    render_comparison,
    render_report,
)
from kret.evaluators.stats import (
    Statistic,
    bootstrap_ci,
    bootstrap_ci_many,
    bootstrap_ci_stat,
    paired_test,
    paired_test_many,
    paired_test_stat,
)

L2, L3 = 1.0, math.log2(3)  # discounts of ranks 1 and 2; rank 3 is log2(4) = 2

# q1: two positives, both found at ranks 2-3; d4 is judged non-relevant (score 0).
# q2: graded relevance (d5 = 2, d6 = 1), the weaker one ranked first.
# q3: no hit at all.
# q4: three tied scores; doc-id tie-break puts the positive d11 first, input order puts it second.
# q5: judged, but no positive qrel -> not evaluated.
QRELS = {
    "q1": {"d1": 1, "d2": 1, "d4": 0},
    "q2": {"d5": 2, "d6": 1},
    "q3": {"d8": 1},
    "q4": {"d11": 1},
    "q5": {"d20": 0},
}
RUN = {
    "q1": {"d3": 0.9, "d1": 0.8, "d2": 0.7, "d4": 0.1},
    "q2": {"d6": 0.9, "d5": 0.5, "d7": 0.4},
    "q3": {"d9": 1.0, "d10": 0.5},
    "q4": {"d12": 0.5, "d11": 0.5, "d13": 0.5},
}

HAND = {
    "q1": {
        1: dict(ndcg=0.0, recall=0.0, precision=0.0, mrr=0.0, map=0.0, hit_rate=0.0, f1=0.0),
        3: dict(
            ndcg=(1 / L3 + 1 / 2) / (1 + 1 / L3),
            recall=1.0,
            precision=2 / 3,
            mrr=1 / 2,
            map=(1 / 2 + 2 / 3) / 2,
            hit_rate=1.0,
            f1=0.8,
        ),
    },
    "q2": {
        1: dict(ndcg=1 / 2, recall=1 / 2, precision=1.0, mrr=1.0, map=1 / 2, hit_rate=1.0, f1=2 / 3),
        3: dict(
            ndcg=(1 + 2 / L3) / (2 + 1 / L3),
            recall=1.0,
            precision=2 / 3,
            mrr=1.0,
            map=(1 + 1) / 2,
            hit_rate=1.0,
            f1=0.8,
        ),
    },
    "q3": {
        k: dict(ndcg=0.0, recall=0.0, precision=0.0, mrr=0.0, map=0.0, hit_rate=0.0, f1=0.0) for k in (1, 3)
    },
    "q4": {
        1: dict(ndcg=1.0, recall=1.0, precision=1.0, mrr=1.0, map=1.0, hit_rate=1.0, f1=1.0),
        3: dict(ndcg=1.0, recall=1.0, precision=1 / 3, mrr=1.0, map=1.0, hit_rate=1.0, f1=0.5),
    },
}


@pytest.fixture(scope="module")
def result():
    return evaluate(QRELS, RUN, ks=(1, 3))


@pytest.mark.parametrize("metric", ["ndcg", "recall", "precision", "mrr", "map", "hit_rate", "f1"])
@pytest.mark.parametrize("k", [1, 3])
def test_per_query_values_match_hand_computation(result, metric, k):
    name = f"f1_per_query_mean@{k}" if metric == "f1" else f"{metric}@{k}"
    for qid, by_k in HAND.items():
        assert result.per_query[name][qid] == pytest.approx(by_k[k][metric], abs=1e-12), (name, qid)
    assert result.means[name] == pytest.approx(np.mean([HAND[q][k][metric] for q in HAND]), abs=1e-12)


def test_queries_without_positive_are_skipped_and_counted(result):
    assert result.query_ids == ("q1", "q2", "q3", "q4")
    assert "q5" not in result.per_query["ndcg@1"]
    assert any("no qrel with score > 0" in w for w in result.warnings)


def test_ndcg_uses_linear_gain_not_exponential(result):
    # Burges' 2^rel - 1 would give q2's ideal DCG@1 a gain of 3 instead of 2.
    assert result.per_query["ndcg@1"]["q2"] == pytest.approx(0.5)


def test_two_f1_definitions(result):
    # KURE F1 is computed from the means: 2 * mean(P) * mean(R) / (mean(P) + mean(R)).
    p1, r1 = (0 + 1 + 0 + 1) / 4, (0 + 0.5 + 0 + 1) / 4
    p3, r3 = (2 / 3 + 2 / 3 + 0 + 1 / 3) / 4, (1 + 1 + 0 + 1) / 4
    assert result.means["f1_kure@1"] == pytest.approx(2 * p1 * r1 / (p1 + r1))
    assert result.means["f1_kure@3"] == pytest.approx(2 * p3 * r3 / (p3 + r3))
    assert result.means["f1_per_query_mean@1"] == pytest.approx((0 + 2 / 3 + 0 + 1) / 4)
    assert result.means["f1_per_query_mean@3"] == pytest.approx((0.8 + 0.8 + 0 + 0.5) / 4)
    # The multi-positive queries q1 and q2 make them differ ...
    assert result.means["f1_kure@1"] > result.means["f1_per_query_mean@1"]
    assert result.means["f1_kure@3"] > result.means["f1_per_query_mean@3"]
    # ... and the KURE one has no per-query values, while P and R are always kept for its CI.
    assert "f1_kure@3" not in result.per_query
    assert {"precision@3", "recall@3"} <= set(result.per_query)


def test_f1_definitions_agree_with_one_positive_per_query():
    # With one positive per query, per-query F1 = 2h/(k+1) is linear in the hit h, so both definitions agree.
    single = {q: QRELS[q] for q in ("q3", "q4")}
    res = evaluate(single, RUN, ks=(1, 3), metrics=("f1_per_query_mean", "f1_kure"))
    for k in (1, 3):
        assert res.means[f"f1_kure@{k}"] == pytest.approx(res.means[f"f1_per_query_mean@{k}"])


def test_tie_break_is_doc_id_by_default_and_input_order_on_request():
    assert rank_run({"q": {"b": 1.0, "a": 1.0, "c": 2.0}}) == {"q": ["c", "a", "b"]}
    assert rank_run({"q": {"b": 1.0, "a": 1.0, "c": 2.0}}, tie_break="input") == {"q": ["c", "b", "a"]}
    res = evaluate({"q4": QRELS["q4"]}, RUN, ks=(1, 3), tie_break="input")
    assert res.means["ndcg@1"] == 0.0
    assert res.means["mrr@3"] == pytest.approx(0.5)
    assert res.means["ndcg@3"] == pytest.approx(1 / L3)


def test_order_of_tied_hits_does_not_change_default_result():
    shuffled = {q: dict(reversed(list(docs.items()))) for q, docs in RUN.items()}
    a, b = evaluate(QRELS, RUN, ks=(1, 3)), evaluate(QRELS, shuffled, ks=(1, 3))
    assert a.means == b.means


def test_missing_run_query_scores_zero_and_is_counted():
    res = evaluate(QRELS, {q: d for q, d in RUN.items() if q != "q2"} | {"extra": {"d1": 1.0}}, ks=(1,))
    assert res.per_query["ndcg@1"]["q2"] == 0.0
    assert any("missing from the run" in w for w in res.warnings)
    assert any("run queries have no qrels" in w for w in res.warnings)


def test_precision_counts_missing_ranks_as_misses():
    res = evaluate({"q": {"d1": 1}}, {"q": {"d1": 1.0}}, ks=(3,), metrics=("precision",))
    assert res.means["precision@3"] == pytest.approx(1 / 3)


def test_bad_arguments():
    with pytest.raises(UserInputError):
        evaluate(QRELS, RUN, metrics=("ndcg_burges",))
    with pytest.raises(UserInputError):
        evaluate(QRELS, RUN, ks=(0, 3))
    with pytest.raises(UserInputError):
        evaluate({"q5": {"d20": 0}}, RUN)


def test_chunks_to_docs_takes_max_over_chunks():
    run = chunks_to_docs({"q": [("a", 0.2), ("b", 0.5), ("a", 0.9), ("a", 0.1)], "empty": []})
    assert run == {"q": {"a": 0.9, "b": 0.5}, "empty": {}}


# --- statistics ---------------------------------------------------------------------------------------


def test_bootstrap_ci_contains_mean_and_is_deterministic():
    values = np.random.default_rng(7).random(300)
    low, high = bootstrap_ci(values, seed=3)
    assert low < values.mean() < high
    assert bootstrap_ci(values, seed=3) == (low, high)
    assert bootstrap_ci(values, seed=4) != (low, high)
    assert bootstrap_ci([0.25]) == (0.25, 0.25)


def test_kure_f1_bootstrap_recomputes_the_statistic():
    rng = np.random.default_rng(1)
    p, r = rng.random(200) / 3, rng.random(200)
    stat = statistic_for("f1_kure@3")
    many = bootstrap_ci_many({"precision@3": p, "recall@3": r}, {"f1_kure@3": stat}, seed=5)["f1_kure@3"]
    generic = bootstrap_ci_stat([p, r], stat, seed=5)
    assert many == pytest.approx(generic, abs=1e-12)
    assert many[0] < float(kure_f1(p.mean(), r.mean())) < many[1]


def test_paired_test_identical_inputs_gives_p_one():
    values = np.random.default_rng(2).random(100)
    delta, p, low, high = paired_test(values, values.copy(), n_resamples=2000)
    assert (delta, p, low, high) == (0.0, 1.0, 0.0, 0.0)


def test_paired_test_detects_a_clear_shift_and_is_deterministic():
    rng = np.random.default_rng(3)
    a = rng.random(200)
    b = np.clip(a + 0.05 + rng.normal(0, 0.02, 200), 0, 1)
    first = paired_test(a, b, n_resamples=2000, seed=1)
    assert first.delta > 0.04 and first.p_value < 0.001
    assert first.ci_low > 0
    assert paired_test(a, b, n_resamples=2000, seed=1) == first
    # the generic path draws the same random numbers and agrees
    generic = paired_test_stat([a], [b], lambda x: x.mean(axis=-1), n_resamples=2000, seed=1)
    assert generic == pytest.approx(first, abs=1e-12)


def test_paired_test_symmetric_differences_are_not_significant():
    rng = np.random.default_rng(4)
    a = rng.random(150)
    noise = rng.normal(0, 0.05, 75)
    b = a + rng.permutation(np.concatenate([noise, -noise])) + 1e-4
    result = paired_test_many({"m": a}, {"m": b}, {"m": Statistic(("m",), lambda mean: mean)})
    assert result["m"].p_value > 0.5
    assert result["m"].ci_low < 0 < result["m"].ci_high


# --- reports ------------------------------------------------------------------------------------------


def _dataset(hash_: str = "abc123") -> DatasetInfo:
    return DatasetInfo(name="toy", path="/toy", split="test", hash=hash_, n_queries=40, n_docs=100)


def _report(shift: float, hash_: str = "abc123", seed: int = 0, qids: int = 40) -> EvalReport:
    rng = np.random.default_rng(seed)
    qrels, run = {}, {}
    for i in range(qids):
        q = f"q{i}"
        qrels[q] = {f"{q}-pos": 1, f"{q}-pos2": 1}
        docs = {f"{q}-neg{j}": float(rng.random()) for j in range(5)}
        docs[f"{q}-pos"] = float(rng.random()) + shift
        docs[f"{q}-pos2"] = float(rng.random()) + shift
        run[q] = docs
    result = evaluate(qrels, run, ks=(1, 3, 10))
    return EvalReport.from_result(
        result,
        _dataset(hash_),
        ReportedModel(name=f"m{shift}", fingerprint="fp"),
        mode="hybrid",
        n_resamples=200,
    )


def test_report_json_roundtrip_and_ci(tmp_path: Path):
    report = _report(0.3)
    again = EvalReport.from_json(report.to_json(tmp_path / "r.json"))
    assert again == report
    assert EvalReport.from_json(tmp_path / "r.json") == report
    for name, summary in report.metrics.items():
        assert summary.ci_low <= summary.mean + 1e-12 <= summary.ci_high + 2e-12, name
    assert "f1_kure@3" in report.metrics and "f1_kure@3" not in report.per_query
    assert report.aggregation == "document score = max over its chunks"


def test_compare_reports_verdicts_and_rendering():
    a, b = _report(0.0), _report(0.6)
    cmp = compare_reports(a, b, n_resamples=2000)
    assert cmp.rows["ndcg@10"].verdict == "B better"
    assert cmp.rows["ndcg@10"].delta == pytest.approx(b.metrics["ndcg@10"].mean - a.metrics["ndcg@10"].mean)
    assert cmp.rows["f1_kure@3"].verdict == "B better"
    assert compare_reports(b, a, n_resamples=2000).rows["ndcg@10"].verdict == "A better"
    same = compare_reports(a, a, n_resamples=500)
    assert {row.verdict for row in same.rows.values()} == {"no significant difference"}
    line = cmp.verdict_line()
    assert line.startswith("B beats A on ndcg@10 by +") and "95% CI" in line and "p<0.001" in line

    console = Console(record=True, width=200)
    render_report(a, console)
    render_comparison(cmp, console)
    text = console.export_text()
    assert "ndcg" in text and "@10" in text and line in text
    assert f"{a.metrics['ndcg@3'].mean:.4f} [" in text


def test_compare_reports_refuses_different_data():
    with pytest.raises(UserInputError, match="different data"):
        compare_reports(_report(0.0), _report(0.1, hash_="other"))
    with pytest.raises(UserInputError, match="different query set"):
        compare_reports(_report(0.0), _report(0.1, qids=39))


def test_plot_writes_png(tmp_path: Path):
    pytest.importorskip("matplotlib")
    from kret.evaluators.plot import plot_reports

    out = tmp_path / "plots" / "curves.png"
    plot_reports([_report(0.0), _report(0.5)], out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(UserInputError):
        plot_reports([_report(0.0)], out, metrics=("nope",))


def test_report_on_a_query_subset_says_so():
    report = _report(0.0, qids=30)  # the dataset info claims 40 queries
    assert report.dataset.n_queries == 30
    assert "evaluated 30 of the split's 40 queries" in report.warnings
