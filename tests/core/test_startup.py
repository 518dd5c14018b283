"""Start-up: `kret --help` and every subcommand's `--help` load no model and import no heavy module.

Checked in a fresh interpreter (a test process has long imported everything), walking the real click tree so
a command added later is covered without editing this test.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = (
    "torch",
    "transformers",
    "sentence_transformers",
    "kiwipiepy",
    "qdrant_edge",
    "qdrant_client",
    "openvino",
    "nncf",
    "langchain",
    "langchain_core",
    "kret.api",
)

CHILD = r"""
import contextlib, io, json, sys
import click
from kret.cli import main as m

m.register_commands()

def walk(cmd, path):
    yield path
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            yield from walk(sub, path + [name])

seen = []
for path in walk(m.cli, []):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            m.cli.main(path + ["--help"], prog_name="kret", standalone_mode=False)
        except SystemExit:
            pass
    assert "Usage:" in out.getvalue(), (path, out.getvalue()[:200])
    seen.append(" ".join(path))
heavy = sorted({name.split(".")[0] if not name.startswith("kret.") else name for name in sys.modules})
print(json.dumps({"commands": seen, "modules": heavy}))
"""


def test_help_of_every_command_imports_nothing_heavy():
    proc = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=300, env=None
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"", "index", "search", "reindex", "collections list", "models pull"} <= set(result["commands"])
    loaded = set(result["modules"])
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_kret_help_process_imports_nothing_heavy():
    """The real entry point, through `python -X importtime`: no heavy module in the import log."""
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-c",
            "import sys; sys.argv=['kret','--help']; from kret.cli.main import main; main()",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported = {
        line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")
    }
    tops = {name.split(".")[0] for name in imported} | imported
    assert not tops & set(HEAVY), sorted(tops & set(HEAVY))
