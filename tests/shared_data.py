"""Where the test suite finds the shared benchmark data, and how a test says it needs it.

The data lives beside the repository (``../shared``, read-only, never copied in). A clone without it must
still run every test that does not need it, so a test that does calls :func:`require` (or takes the
``shared_dir`` fixture) and is *skipped with the path it looked for* — not failed, and not silently passed.
``KRET_TEST_SHARED`` points the suite at another copy (or at a missing folder, to check the skips).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("KRET_TEST_SHARED", REPO.parent / "shared"))
BENCH = SHARED / "data" / "bench"


def missing_reason(path: Path) -> str:
    return f"needs the shared data at {path} (absent; CI provides ../shared beside the repo)"


def require(path: Path) -> Path:
    """``path`` if it exists, else skip the calling test (or fixture) with the reason."""
    if not path.exists():
        pytest.skip(missing_reason(path))
    return path
