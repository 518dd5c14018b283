"""bench/regress.py and bench/regressions/*.yaml: the documented numbers are the YAML's, and the cheapest of
them still reproduces.

Fast lane: the regression files are valid, every number in the marked markdown blocks is rendered from them
(a hand edit of a table in README.md or bench/README.md fails here), and the tolerance / re-record logic.
Slow lane: one real re-run of the cheapest run (the Kiwi BM25 parity on miracl-ko-mini: no model, a couple
of minutes on two cores) must come back OK.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from shared_data import BENCH, require

REPO = Path(__file__).resolve().parents[2]
CHEAPEST = "sparse-parity.miracl-ko-mini"


def _regress():
    spec = importlib.util.spec_from_file_location("kret_bench_regress", REPO / "bench" / "regress.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def regress():
    return _regress()


def test_regression_files_are_valid(regress):
    suite = regress.load_suite()
    assert CHEAPEST in suite.runs and "cheap" in suite.runs[CHEAPEST].tags
    for run in suite.runs.values():
        assert run.tags and ({"cheap", "release"} & set(run.tags)), f"{run.id}: tag it cheap or release"
        assert run.rows, run.id
        if run.dataset:
            assert all(len(h) == 64 for h in suite.datasets[run.dataset]["sha256"].values())
    speed = [r for r in suite.rows.values() if r.speed]
    assert speed and all(r.rel_tol is not None for r in speed)
    # NDCG rows are the tight ones the docs promise.
    assert all(r.tol <= 0.0005 for r in suite.rows.values() if r.id.endswith("ndcg@10"))


def test_markdown_tables_match_the_regression_files(regress):
    changed = regress.render_all(regress.load_suite(), regress.RESULTS, check=True)
    assert changed == [], f"{changed}: edit bench/regressions/*.yaml and run `python bench/regress.py render`"


def test_tolerances(regress):
    row = regress.Row(id="r/x", expected=0.9563, file=Path("x.yaml"), key="k", tol=0.0005)
    assert row.check(0.9567) and row.check(0.9558) and not row.check(0.9569)
    speed = regress.Row(id="r/ms", expected=30.0, file=Path("x.yaml"), key="k", rel_tol=2.0, speed=True)
    assert speed.check(89.0) and speed.check(10.5) and not speed.check(91.0) and not speed.check(9.0)
    exact = regress.Row(id="r/n", expected=1029, file=Path("x.yaml"), key="k", tol=0, fmt=",d")
    assert exact.check(1029) and not exact.check(1030)
    assert exact.render(22296) == "22,296" and row.render(0.95) == "0.9500"


def test_record_rewrites_only_that_row(regress, tmp_path):
    f = tmp_path / "x.yaml"
    f.write_text(
        "runs:\n  - id: r\n    rows:\n"
        "      - {id: r/ndcg@1, key: a, expected: 0.5000, tol: 0.0005}\n"
        "      - {id: r/ndcg@10, key: b, expected: 0.9000, tol: 0.0005}\n"
        "      - {id: r/ms, key: c, expected: 30.0, rel_tol: 2.0, speed: true, fmt: raw}\n",
        encoding="utf-8",
    )
    rows = [
        regress.Row(id="r/ndcg@10", expected=0.9, file=f, key="b", tol=0.0005),
        regress.Row(id="r/ms", expected=30.0, file=f, key="c", rel_tol=2.0, speed=True, fmt="raw"),
    ]
    results = [regress.RowResult(rows[0], "FAIL", 0.91234), regress.RowResult(rows[1], "OK", 41.5)]
    assert regress.record(results, with_speed=False) == ["r/ndcg@10"]
    text = f.read_text(encoding="utf-8")
    assert "{id: r/ndcg@10, key: b, expected: 0.9123, tol: 0.0005}" in text
    assert "expected: 0.5000" in text and "expected: 30.0," in text
    assert regress.record(results, with_speed=True) == ["r/ms"]
    assert "expected: 41.5," in f.read_text(encoding="utf-8")


def test_record_a_percent_row_as_the_fraction_it_claims(regress, tmp_path):
    """A row printed as a percentage (fmt ``.1%``) is recorded as a fraction with the decimals that percentage
    shows (0.997 -> 1.000); formatting it with the ``%`` (``'100.0%'``) used to crash ``--record``."""
    f = tmp_path / "x.yaml"
    f.write_text(
        "runs:\n  - id: r\n    rows:\n      - {id: r/rate, key: a, expected: 0.997, tol: 0.001, fmt: .1%}\n",
        encoding="utf-8",
    )
    row = regress.Row(id="r/rate", expected=0.997, file=f, key="a", tol=0.001, fmt=".1%")
    assert regress.record([regress.RowResult(row, "FAIL", 357 / 357)], with_speed=False) == ["r/rate"]
    assert "expected: 1.000, tol: 0.001, fmt: .1%}" in f.read_text(encoding="utf-8")
    assert row.render(row.expected) == "100.0%"


def test_missing_dataset_is_a_skip_with_reason(regress, tmp_path):
    suite = regress.load_suite()
    reason = regress.check_dataset(suite, "korquad-dev", tmp_path, {})
    assert reason and str(tmp_path) in reason


@pytest.mark.slow
def test_cheapest_regression_reproduces(tmp_path):
    require(BENCH / "miracl-ko-mini")
    results = tmp_path / "results.json"
    r = subprocess.run(
        [
            sys.executable,
            "bench/regress.py",
            "run",
            CHEAPEST,
            "--results",
            str(results),
            "--home",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    rows = json.loads(results.read_text(encoding="utf-8"))["rows"]
    assert rows and all(v["status"] == "OK" for v in rows.values()), rows
    assert rows[f"{CHEAPEST}/kret_ndcg@10"]["measured"] == pytest.approx(0.9140, abs=0.0005)


def test_execute_reads_rows_and_reports_errors_and_timeouts(regress, tmp_path):
    """The run path end to end on stand-in commands (no benchmark): OK, FAIL, an unreadable row, a timeout."""
    folder = tmp_path / "regressions"
    folder.mkdir()
    (folder / "datasets.yaml").write_text("datasets: {}\n", encoding="utf-8")
    (folder / "tables.yaml").write_text("blocks: []\n", encoding="utf-8")
    (folder / "t.yaml").write_text(
        "runs:\n"
        "  - id: t.echo\n    tags: [cheap]\n    source: stdout\n"
        "    command: echo 'ndcg 0.9001'; echo 'count 7'\n    rows:\n"
        "      - {id: t.echo/ndcg, regex: 'ndcg ([0-9.]+)', expected: 0.9000, tol: 0.0005}\n"
        "      - {id: t.echo/count, regex: 'count (\\d+)', expected: 8, tol: 0, fmt: d}\n"
        "      - {id: t.echo/absent, regex: 'nope ([0-9]+)', expected: 1, tol: 0}\n"
        "  - id: t.json\n    tags: [cheap]\n"
        '    command: "echo \'{\\"m\\": {\\"x\\": 2.5}}\' > {out}"\n    rows:\n'
        "      - {id: t.json/x, key: m.x, expected: 2.0, rel_tol: 0.5, speed: true, fmt: raw}\n"
        "  - id: t.slow\n    tags: [cheap]\n    source: stdout\n    command: sleep 30\n    rows:\n"
        "      - {id: t.slow/x, regex: 'x (\\d)', expected: 1, tol: 0}\n"
        "  - id: t.fails\n    tags: [cheap]\n    source: stdout\n    command: echo boom >&2; exit 3\n    rows:\n"
        "      - {id: t.fails/x, regex: 'x (\\d)', expected: 1, tol: 0}\n",
        encoding="utf-8",
    )
    suite = regress.load_suite(folder)
    args = type("Args", (), {"home": tmp_path / "home", "data_root": tmp_path, "timeout": 0.02})()

    def statuses(run_id):
        results, _ = regress.execute(suite.runs[run_id], suite, args, {})
        return [(r.status, r.measured) for r in results], results

    got, _ = statuses("t.echo")
    assert got == [("OK", 0.9001), ("FAIL", 7.0), ("ERROR", None)]
    got, _ = statuses("t.json")
    assert got == [("OK", 2.5)]
    got, results = statuses("t.slow")
    assert got == [("ERROR", None)] and "timed out" in results[0].reason
    got, results = statuses("t.fails")
    assert got == [("ERROR", None)] and "exit 3" in results[0].reason and "boom" in results[0].reason
