"""CLI behaviour with the tiny model: one-line errors with exit codes, JSON output, help that teaches."""

from __future__ import annotations

import json
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "ko"


def _run(args: list[str], tiny_model_dir, monkeypatch):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "kret.cli.main", *args], capture_output=True, text=True, timeout=300
    )


def test_index_json_and_search_errors(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("KRET_MODEL", str(tiny_model_dir))
    r = _run(["search", "한글"], tiny_model_dir, monkeypatch)
    assert r.returncode == 5 and r.stderr.strip().startswith("error: no collection named 'default'")
    assert "Traceback" not in r.stderr
    r = _run(["index", str(SAMPLES), "--json"], tiny_model_dir, monkeypatch)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert {"added", "updated", "unchanged", "deleted", "failed", "failures"} <= set(summary)
    assert summary["added"] == 8
    r = _run(["search", "  "], tiny_model_dir, monkeypatch)
    assert r.returncode == 2 and "query is empty" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _run(["search", "휴가", "--where", "nope=1"], tiny_model_dir, monkeypatch)
    assert r.returncode == 2 and "nope" in r.stderr and "Traceback" not in r.stderr
    r = _run(["search", "휴가", "--where", "dept=인사", "--json"], tiny_model_dir, monkeypatch)
    assert r.returncode == 0
    assert all(json.loads(line)["doc_id"].endswith(("faq-1", "faq-3")) for line in r.stdout.splitlines())
    r = _run(["index", "/no/such/folder"], tiny_model_dir, monkeypatch)
    assert r.returncode == 2 and "/no/such/folder" in r.stderr and "Traceback" not in r.stderr
    r = _run(["collections", "list", "--json"], tiny_model_dir, monkeypatch)
    assert json.loads(r.stdout)[0]["name"] == "default"


def test_bad_settings_are_one_line(monkeypatch, tiny_model_dir):
    monkeypatch.setenv("KRET_PREFETCH_K", "zero")
    r = _run(["search", "x"], tiny_model_dir, monkeypatch)
    assert r.returncode == 2 and "prefetch_k" in r.stderr and "Traceback" not in r.stderr


def test_help_teaches():
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "kret.cli.main", "--help"], capture_output=True, text=True, timeout=120
    )
    for command in ("index", "search", "eval", "train", "models", "collections", "reindex", "gc"):
        assert command in r.stdout
