"""The terminal experience with the tiny model: search snippets (table, --full, --json), the interactive
prompt driven by scripted input, and missing optional extras as one line naming the pip install."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from kret.cli.main import cli, register_commands
from kret.errors import MissingExtraError

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "ko"

register_commands()


@pytest.fixture
def indexed(tiny_kret, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("KRET_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("COLUMNS", "160")
    summary = tiny_kret.index([SAMPLES])
    assert summary.added == 8
    return tiny_kret


def _invoke(args, input=None):
    return CliRunner().invoke(cli, args, input=input, catch_exceptions=False)


# snippets in `kret search` ------------------------------------------------------------------------------
def test_search_json_keeps_text_and_adds_highlights_and_snippet(indexed):
    r = _invoke(["search", "세종대왕이 만든 문자", "-k", "3", "--json"])
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(recs) == 3
    top = next(rec for rec in recs if "hangul" in rec["path"])
    assert "세종대왕이" in top["text"]  # full text kept
    marked = [top["text"][a:b] for a, b in top["highlights"]]
    assert "세종대왕" in marked and "문자" in marked
    snip = top["snippet"]
    assert snip["basis"] == "terms"
    assert [snip["text"][a:b] for a, b in snip["spans"]][0] == "세종대왕"
    assert {"세종", "대왕", "문자"} <= set(snip["matched_terms"])
    assert set(top["branches"]) <= {"dense", "sparse"}


def test_search_table_shows_snippet_ranks_and_full(indexed):
    r = _invoke(["search", "세종대왕", "-k", "2", "--mode", "sparse"])
    assert r.exit_code == 0, r.output
    assert "why it matched" in r.stdout and "s#1" in r.stdout and "hangul.txt" in r.stdout
    assert "세종대왕이" in r.stdout and "…" in r.stdout
    # the snippet leaves out the chunk's other sentences; --full prints them
    assert "오늘날 한글은" not in r.stdout
    full = _invoke(["search", "세종대왕", "-k", "2", "--mode", "sparse", "--full"])
    assert "오늘날 한글은" in full.stdout


# the interactive prompt ------------------------------------------------------------------------------------
def test_prompt_answers_questions_applies_commands_and_survives_errors(indexed, home):
    script = "\n".join(
        [
            ":help",
            ":k 2",
            ":mode sparse",
            "세종대왕",
            ":where dept=인사",
            "휴가",
            ":where nope=1",
            "휴가",
            ":where -",
            ":k zero",
            ":fusion nope",
            ":bogus",
            ":json on",
            "한글",
            ":show",
        ]
    )
    r = _invoke(["search", "-i"], input=script + "\n")
    assert r.exit_code == 0, r.output
    out = r.output
    assert "ready in" in out and ":where key=value" in out  # start-up line and :help
    assert "hangul.txt" in out and "s#1" in out
    assert out.count(" · search ") == 3  # latency after each answered question (one was refused)
    assert "1 hit ·" in out  # only one chunk has 세종대왕 for the sparse branch
    assert "nope" in out and "error:" in out  # unknown filter key: one line, session goes on
    assert ":k expects an integer" in out and "unknown command :bogus" in out
    assert "unknown fusion" in out or "fusion" in out
    json_lines = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(json_lines) == 2 and all("highlights" in rec for rec in json_lines)  # :k 2
    assert all(rec["text"][a:b] == "한글" for rec in json_lines for a, b in rec["highlights"])
    assert "k 2; mode sparse" in out and "filter none" in out
    history = (home / "search_history").read_text(encoding="utf-8")
    assert "세종대왕" in history and ":k 2" in history


def test_where_filter_in_prompt_restricts_results(indexed):
    r = _invoke(["search"], input=":json on\n:where dept=인사\n휴가\n")  # no query = the prompt
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert recs and all(rec["doc_id"].endswith(("faq-1", "faq-3")) for rec in recs)


def test_prompt_starts_from_command_line_options_and_quits(indexed):
    r = _invoke(["search", "-i", "-k", "1", "--mode", "sparse", "--json"], input="세종대왕\n:q\n한글\n")
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(recs) == 1  # -k 1 applied, and nothing after :q was answered
    assert set(recs[0]["branches"]) == {"sparse"}


def test_prompt_releases_the_collection(indexed):
    _invoke(["search", "-i"], input="한글\n")
    # Embedded Qdrant Edge allows one opener: a second open in this process works only if the prompt closed.
    hits = indexed.search("한글", k=1)
    assert hits


def test_prompt_on_a_missing_collection_is_one_error(indexed):
    r = CliRunner().invoke(cli, ["search", "-i", "-c", "nosuch"], input="")
    assert r.exit_code != 0 and "nosuch" in str(r.exception)


# missing optional extras -----------------------------------------------------------------------------------
def test_train_without_the_training_extra_names_the_pip_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    r = CliRunner().invoke(cli, ["train", "pretrain", "--wiki", "/no/such/dump"])
    assert isinstance(r.exception, MissingExtraError)
    assert "pip install 'kret[train]'" in str(r.exception) and "datasets" in str(r.exception)
    assert len(str(r.exception).splitlines()) == 1
    r = CliRunner().invoke(cli, ["train", "finetune", "--help"])  # help still works without it
    assert r.exit_code == 0 and "Usage" in r.output


def test_plot_without_matplotlib_names_the_pip_install_before_evaluating(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    # A dataset that does not exist: the extra is checked first, so this is the error, not the dataset's.
    r = CliRunner().invoke(cli, ["eval", "/no/such/dataset", "--plot", "curves.png"])
    assert isinstance(r.exception, MissingExtraError)
    assert "pip install 'kret[plot]'" in str(r.exception)


def test_missing_extra_is_one_line_on_stderr_with_exit_code(tmp_path):
    import subprocess

    code = (
        "import sys; sys.modules['matplotlib'] = None; sys.argv = ['kret', 'eval', '/x', '--plot', 'a.png'];"
        "from kret.cli.main import main; main()"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: --plot needs the 'plot' extra (matplotlib not installed): pip install 'kret[plot]'"
    ]


# progress off a terminal ----------------------------------------------------------------------------------


def test_progress_off_a_terminal_is_plain_lines_at_start_every_interval_and_end(monkeypatch, capsys):
    """Into a log file rich would write the bars once, when they stop; `kret train` under nohup said nothing
    for an hour. Lines: the first update, then at most one per interval, the completion once, a restart."""
    import time

    from kret.cli.common import line_progress

    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    progress = line_progress(30.0)
    task = progress.add_task("training", total=4, extra="")
    progress.update(task, advance=1, extra="loss 0.5000")
    now[0] += 10
    progress.update(task, advance=1)  # within the interval: no line
    now[0] += 25
    progress.update(task, advance=1)  # 35 s after the first line
    progress.update(task, advance=1)  # completes
    progress.update(task, advance=0)  # already written as complete
    progress.update(task, completed=0)  # the stage starts again (the gate evaluates twice)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "training: 1/4 (25%)",
        "training: 3/4 (75%)",
        "training: 4/4 (100%)",
        "training: 0/4 (0%)",
    ]
    assert "loss 0.5000" in lines[0] and "elapsed" in lines[0]


def test_index_into_a_log_file_writes_progress_lines(tiny_model_dir):
    from tests.cli_runner import invoke

    r = invoke(["index", str(SAMPLES), "-m", str(tiny_model_dir)])
    assert r.exit_code == 0, r.stderr
    assert "embedding documents: 8/8 (100%)" in r.stderr
    assert "\x1b[" not in r.stderr  # no terminal control codes in a file
