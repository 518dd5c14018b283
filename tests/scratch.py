"""A scratch folder and a clean kret environment for module-scoped fixtures.

The autouse ``_isolated_env`` fixture (conftest.py) isolates each test, but a module-scoped fixture runs
before it and outlives it; the mining and fine-tuning tests index one collection per module, so they need
the same isolation for the whole module.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def isolated_module_env(prefix: str) -> Iterator[Path]:
    """A scratch folder (on tmpfs where there is one: Edge shards are much faster there) with no developer
    ``KRET_*`` variables and no kret.toml in force while the body runs; removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None))
    try:
        with pytest.MonkeyPatch.context() as mp:
            for key in list(os.environ):
                if key.startswith("KRET_") and key != "KRET_TEST_CACHE":
                    mp.delenv(key, raising=False)
            mp.setenv("KRET_CONFIG", str(base / "no-kret.toml"))
            yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)
