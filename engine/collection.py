"""A named collection: its backend, its live store and the manifest that says how it was built.

The manifest is the collection's memory of its model (name + fingerprint), vector size, prompts, chunking and
BM25 parameters. Anything that would mix vectors of two models in one collection is refused here, with both
models named, because such a collection returns confident nonsense rather than an error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from kret.engine.models import ModelInfo
from kret.engine.store import Backend, Store
from kret.errors import CollectionNotFoundError, ModelMismatchError
from kret.settings import Settings

MANIFEST_VERSION = 1


def make_backend(settings: Settings) -> Backend:
    """Qdrant Edge under KRET_HOME unless a server URL is configured."""
    if settings.server_mode:
        from kret.engine.server_store import ServerBackend

        return ServerBackend.from_settings(settings)
    from kret.engine.edge_store import EdgeBackend

    return EdgeBackend(settings.collections_dir)


def build_manifest(
    *,
    model: ModelInfo,
    dimension: int,
    prompts: dict[str, str],
    max_seq_length: int,
    chunking: dict[str, int],
    sparse: dict[str, Any],
) -> dict[str, Any]:
    from kret import __version__

    return {
        "manifest_version": MANIFEST_VERSION,
        "kret_version": __version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": {"name": model.name, "fingerprint": model.fingerprint, "source": model.source or model.name},
        "dimension": dimension,
        "prompts": prompts,
        "max_seq_length": max_seq_length,
        "chunking": chunking,
        "sparse": sparse,
    }


def check_model(name: str, manifest: dict[str, Any], model: ModelInfo) -> None:
    built = manifest.get("model", {})
    if built.get("fingerprint") != model.fingerprint:
        raise ModelMismatchError(
            f"collection {name!r} was built with model {built.get('name')} ({str(built.get('fingerprint'))[:12]}) "
            f"but you asked for {model.name} ({model.fingerprint[:12]}); use the collection's model, or build a new "
            f"collection / `kret reindex --collection {name} --model {model.name}`"
        )


@dataclass
class Collection:
    """An open collection version. Close it (or use ``with``) so an embedded index is released."""

    name: str
    version: str
    store: Store
    manifest: dict[str, Any]

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_collection(backend: Backend, name: str) -> Collection:
    version = backend.live_version(name)
    if version is None:
        known = backend.list_collections()
        hint = f" (collections: {', '.join(known)})" if known else " — run `kret index PATH` first"
        raise CollectionNotFoundError(f"no collection named {name!r}{hint}")
    store = backend.open_version(name, version)
    try:
        manifest = store.read_manifest()
    except Exception:
        store.close()
        raise
    return Collection(name=name, version=version, store=store, manifest=manifest)
