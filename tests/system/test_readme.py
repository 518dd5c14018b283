"""The README's code must run as printed: the LangChain RAG example and the Python API example."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _block_after(heading: str) -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split(heading, 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.parametrize("heading", ["## LangChain", "### Python API"])
def test_readme_example_runs(heading, tiny_model_dir, home, tmp_path):
    code = _block_after(heading)
    if heading == "### Python API":
        (tmp_path / "docs").mkdir()
        (tmp_path / "docs" / "a.txt").write_text("한글은 세종대왕이 만들었다.", encoding="utf-8")
    env = {**os.environ, "KRET_HOME": str(home), "KRET_MODEL": str(tiny_model_dir), "HF_HUB_OFFLINE": "1"}
    cwd = REPO if heading == "## LangChain" else tmp_path
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip()
