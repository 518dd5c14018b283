"""``kret.wiring``: the settings reach the engine as plain values, with the same errors as before."""

from __future__ import annotations

from pathlib import Path

import pytest

from kret.engine.edge_store import EdgeBackend
from kret.engine.server_store import ServerBackend
from kret.errors import StoreError
from kret.settings import load_settings
from kret.wiring import make_backend, search_options, server_backend


def test_make_backend_is_edge_without_a_server(tmp_path: Path) -> None:
    backend = make_backend(load_settings(home=tmp_path))
    assert isinstance(backend, EdgeBackend)


def test_server_backend_needs_a_url() -> None:
    with pytest.raises(StoreError, match=r"^no Qdrant server configured \(set KRET_QDRANT_URL\)$"):
        server_backend(load_settings())


def test_server_backend_passes_the_cluster_settings() -> None:
    settings = load_settings(
        qdrant_url=":memory:", shard_number=2, replication_factor=3, write_consistency_factor=1
    )
    backend = make_backend(settings)
    try:
        assert isinstance(backend, ServerBackend)
        assert (backend.prefix, backend.shard_number, backend.replication_factor) == ("kret", 2, 3)
        assert backend.write_consistency_factor == 1
    finally:
        backend.close()


def test_server_lock_files_live_under_kret_home_one_folder_per_server(tmp_path: Path) -> None:
    """Issue 13: kret processes of one machine that share a server follow the lock protocol there too; the
    lock files stay under KRET_HOME, and a second server (or prefix) has its own."""
    folders = []
    for prefix in ("kret", "other"):
        backend = server_backend(load_settings(qdrant_url=":memory:", home=tmp_path), prefix=prefix)
        try:
            assert backend.locks is not None
            folders.append(backend.locks.folder)
        finally:
            backend.close()
    assert all(f.parent == tmp_path / "locks" for f in folders) and folders[0] != folders[1]


def test_search_options_take_the_settings_defaults() -> None:
    settings = load_settings(search_mode="dense", rrf_k=7, prefetch_k=40, hnsw_ef=64)
    opts = search_options(settings, k=3, mode=None)
    assert (opts.k, opts.mode, opts.rrf_k, opts.prefetch_k, opts.hnsw_ef) == (3, "dense", 7, 40, 64)
