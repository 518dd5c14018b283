"""Where the application settings become the plain values the engine takes.

The engine (``kret.engine``) never sees a ``Settings``: it is handed URLs, numbers and defaults, so it can be
used and tested without the application's configuration. This module is the one place that reads the
settings fields meant for the engine; ``Kret`` and ``kret doctor`` go through it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kret.engine.search import SearchOptions
from kret.errors import StoreError

if TYPE_CHECKING:
    from kret.engine.server_store import ServerBackend
    from kret.engine.store import Backend
    from kret.settings import Settings


def search_options(settings: Settings, **overrides: Any) -> SearchOptions:
    """The served search options: the settings' defaults with every override that is not None applied.

    An unknown override name raises TypeError (a misspelt option must not silently leave the default in
    force); the result is validated (``SearchOptions.with_overrides``)."""
    base = SearchOptions(
        mode=settings.search_mode,
        fusion=settings.fusion,
        rrf_k=settings.rrf_k,
        prefetch_k=settings.prefetch_k,
        dense_weight=settings.dense_weight,
        sparse_weight=settings.sparse_weight,
        hnsw_ef=settings.hnsw_ef,
    )
    return base.with_overrides(**overrides)


def server_lock_dir(settings: Settings, url: str, prefix: str) -> Path:
    """Where this machine's kret processes keep their lock files for one server and prefix (under KRET_HOME,
    one folder per server so that two servers' same-named collections do not share locks)."""
    digest = hashlib.sha256(f"{url}\0{prefix}".encode()).hexdigest()[:16]
    return settings.home / "locks" / f"qdrant-{digest}"


def server_backend(settings: Settings, *, prefix: str = "kret") -> ServerBackend:
    """The configured Qdrant server, connected and checked (``ServerBackend.connect``)."""
    from kret.engine.server_store import ServerBackend

    url = settings.qdrant_url
    if not url:
        raise StoreError("no Qdrant server configured (set KRET_QDRANT_URL)")
    return ServerBackend.connect(
        url,
        api_key=settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None,
        prefer_grpc=settings.qdrant_prefer_grpc,
        timeout=settings.qdrant_timeout,
        prefix=prefix,
        shard_number=settings.shard_number,
        replication_factor=settings.replication_factor,
        write_consistency_factor=settings.write_consistency_factor,
        lock_dir=server_lock_dir(settings, url, prefix),
        leases=True,
    )


def make_backend(settings: Settings) -> Backend:
    """Qdrant Edge under KRET_HOME unless a server URL is configured."""
    if settings.server_mode:
        return server_backend(settings)
    from kret.engine.edge_store import EdgeBackend

    return EdgeBackend(settings.collections_dir)
