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
from kret.errors import CollectionNotFoundError, ModelMismatchError, StoreError

MANIFEST_VERSION = 1


def build_manifest(
    *,
    model: ModelInfo,
    dimension: int,
    prompts: dict[str, str],
    max_seq_length: int,
    chunking: dict[str, int],
    sparse: dict[str, Any],
    serving: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``serving`` (runtime, precision, int8 calibration) is stored inside ``model``, next to the fingerprint:
    the same weights on another numeric path give slightly different vectors."""
    from kret import __version__

    model_entry: dict[str, Any] = {
        "name": model.name,
        "fingerprint": model.fingerprint,
        "source": model.source or model.name,
    }
    model_entry.update(serving or {})
    return {
        "manifest_version": MANIFEST_VERSION,
        "kret_version": __version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": model_entry,
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


# Collections written before runtimes existed were embedded by sentence-transformers on torch in fp32.
LEGACY_SERVING = {"runtime": "torch", "precision": "fp32"}


def recorded_serving(manifest: dict[str, Any]) -> dict[str, Any]:
    """The runtime/precision (and int8 calibration) a collection's passages were embedded with."""
    built = manifest.get("model", {})
    if "runtime" not in built:
        return dict(LEGACY_SERVING)
    out = {"runtime": built["runtime"], "precision": built.get("precision", "auto")}
    if built.get("calibration"):
        out["calibration"] = built["calibration"]
    return out


def recorded_lexical_text(manifest: dict[str, Any]) -> str:
    """The rule for the text BM25 indexes (``indexer.document.LEXICAL_TEXT_RULES``) this collection was
    built with; collections made before it was recorded indexed the embedded text."""
    from kret.indexer.document import AS_EMBEDDED, LEXICAL_TEXT_RULES

    rule = manifest.get("sparse", {}).get("text", AS_EMBEDDED)
    if rule not in LEXICAL_TEXT_RULES:
        raise StoreError(
            f"collection manifest names an unknown lexical text rule {rule!r} (made by a newer kret?); "
            f"this kret knows {', '.join(LEXICAL_TEXT_RULES)}"
        )
    return str(rule)


def check_serving(name: str, manifest: dict[str, Any], runtime: str | None, precision: str | None) -> None:
    """Refuse an explicitly requested runtime/precision other than the collection's own.

    Query and passage vectors must come from the same numeric path: an int8 query against bf16 passages
    drifts silently. By default searches simply use the recorded pair; only an explicit different request
    (argument, KRET_RUNTIME / KRET_PRECISION, kret.toml) gets here and fails with both named.
    """
    built = recorded_serving(manifest)
    want = {"runtime": runtime or built["runtime"], "precision": precision or built["precision"]}
    if (want["runtime"], want["precision"]) != (built["runtime"], built["precision"]):
        raise ModelMismatchError(
            f"collection {name!r} was embedded with runtime {built['runtime']} at precision {built['precision']} "
            f"but you asked for runtime {want['runtime']} at precision {want['precision']}; search it with its own "
            f"(unset KRET_RUNTIME/KRET_PRECISION) or rebuild it (`kret reindex --collection {name} --model ...`)"
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
