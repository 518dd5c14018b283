"""CLI behaviour with the tiny model: one-line errors with exit codes, JSON output, help that teaches."""

from __future__ import annotations

import functools
import json
import signal
from pathlib import Path
from typing import Any

import click
from click.testing import CliRunner, Result

from kret.cli.common import run_cli
from kret.cli.main import cli, register_commands

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "ko"

register_commands()


class _Entry(click.Command):
    """``kret`` as the installed script runs it, in-process: ``run_cli`` turns a kret error into one line on
    stderr and its exit code. (A real process's exit code is checked in tests/system/test_hardening.py.)"""

    def main(self, args: Any = None, prog_name: str | None = None, **extra: Any) -> None:
        sigterm = signal.getsignal(signal.SIGTERM)  # run_cli installs its own; keep pytest's
        try:
            run_cli(functools.partial(cli.main, args=args, prog_name=prog_name))
        finally:
            signal.signal(signal.SIGTERM, sigterm)


def _run(args: list[str]) -> Result:
    return CliRunner().invoke(_Entry("kret"), args, catch_exceptions=False)


def test_index_json_and_search_errors(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("KRET_MODEL", str(tiny_model_dir))
    r = _run(["search", "한글"])
    assert r.exit_code == 5 and r.stderr.strip().startswith("error: no collection named 'default'")
    assert "Traceback" not in r.stderr
    r = _run(["index", str(SAMPLES), "--json"])
    assert r.exit_code == 0, r.stderr
    summary = json.loads(r.stdout)
    assert {"added", "updated", "unchanged", "deleted", "failed", "failures"} <= set(summary)
    assert summary["added"] == 8
    r = _run(["search", "  "])
    assert r.exit_code == 2 and "query is empty" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _run(["search", "휴가", "--where", "nope=1"])
    assert r.exit_code == 2 and "nope" in r.stderr and "Traceback" not in r.stderr
    r = _run(["search", "휴가", "--where", "dept=인사", "--json"])
    assert r.exit_code == 0
    assert all(json.loads(line)["doc_id"].endswith(("faq-1", "faq-3")) for line in r.stdout.splitlines())
    r = _run(["index", "/no/such/folder"])
    assert r.exit_code == 2 and "/no/such/folder" in r.stderr and "Traceback" not in r.stderr
    r = _run(["collections", "list", "--json"])
    assert json.loads(r.stdout)[0]["name"] == "default"


def test_bad_settings_are_one_line(monkeypatch):
    monkeypatch.setenv("KRET_PREFETCH_K", "zero")
    r = _run(["search", "x"])
    assert r.exit_code == 2 and "prefetch_k" in r.stderr and "Traceback" not in r.stderr


def test_help_teaches():
    r = _run(["--help"])
    assert r.exit_code == 0, r.stderr
    for command in ("index", "search", "eval", "train", "models", "collections", "reindex", "gc"):
        assert command in r.stdout
