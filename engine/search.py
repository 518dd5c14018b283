"""Query-time path shared by ``kret search``, the LangChain retriever, ``kret eval`` and negative mining.

Everything that reaches a user goes through ``Searcher.search`` so that what is evaluated and mined is exactly
what is served. Filters are turned into Qdrant conditions (globs are resolved against the indexed paths
first), so they run inside Qdrant's payload indexes, not on a truncated result list.
"""

from __future__ import annotations

import fnmatch
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from kret.engine.collection import Collection
from kret.engine.embedder import Embedder
from kret.engine.fusion import DEFAULT_FUSION, get_fusion
from kret.engine.sparse import KiwiBM25Encoder
from kret.engine.store import (
    CHUNK_KEYS,
    DEFAULT_HNSW_EF,
    INTEGER_INDEXES,
    KEYWORD_INDEXES,
    Condition,
    QuerySpec,
    RawHit,
)
from kret.engine.types import FusionKind, Hit, SearchFilter, SearchMode, positive_finite
from kret.errors import EmptyQueryError, UnknownFilterKeyError, UserInputError
from kret.indexer.loaders import canonical_source_type, source_types

_MODES = ("dense", "sparse", "hybrid")


@dataclass
class SearchOptions:
    """How to search. ``fusion=None`` means the collection's calibrated fusion (``kret tune``, stored in its
    manifest) when it has one, else ``DEFAULT_FUSION``; naming a fusion overrides the calibration.
    ``fusion_params`` are a client-side method's parameters as (name, value) pairs (hashable on purpose:
    the LangChain retriever groups requests by their options)."""

    k: int = 10
    mode: SearchMode = "hybrid"
    fusion: FusionKind | None = None
    rrf_k: int = 60
    prefetch_k: int = 100
    dense_weight: float = 1.0
    sparse_weight: float = 1.0
    fusion_params: tuple[tuple[str, float], ...] = ()
    # Exact (brute-force) nearest neighbours instead of the HNSW graph: slower, no approximation; for
    # measuring what HNSW costs in recall on a collection (bench/branch_runs.py ``dense-exact``).
    exact: bool = False
    # HNSW beam width of the dense branch (Qdrant's ``hnsw_ef``); None = the store's ``DEFAULT_HNSW_EF``.
    hnsw_ef: int | None = None

    def with_overrides(self, **overrides: Any) -> SearchOptions:
        """These options with each override that is not None put in their place, then validated.

        None means "keep the default" (a CLI flag left unset), so callers can pass every option they
        know without deciding which were given. The defaults themselves come from whoever built ``self``
        (``kret.wiring.search_options`` fills them from the application settings)."""
        unknown = sorted(set(overrides) - {f.name for f in fields(self)})
        if unknown:  # a misspelt option (``fusoin="rrf"``) must not silently leave the default in force
            raise TypeError(
                f"unknown search option(s) {', '.join(unknown)} "
                f"(options: {', '.join(f.name for f in fields(self))})"
            )
        out = replace(self)
        for key, value in overrides.items():
            if value is not None:
                setattr(out, key, value)
        out.validate()
        return out

    def validate(self) -> None:
        """The checks every search goes through, whether options came from flags, settings or code."""
        if self.mode not in _MODES:
            raise UserInputError(f"unknown search mode {self.mode!r} (choose dense, sparse or hybrid)")
        method = get_fusion(self.fusion or DEFAULT_FUSION)
        for name in ("k", "rrf_k", "prefetch_k", "hnsw_ef"):
            value = getattr(self, name)
            if value is None and name == "hnsw_ef":  # unset: the store's default width
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise UserInputError(f"{name} must be a whole number of at least 1, got {value!r}")
            setattr(self, name, int(value))
        for name in ("dense_weight", "sparse_weight"):
            try:
                setattr(self, name, positive_finite(name, getattr(self, name)))
            except ValueError as exc:
                raise UserInputError(str(exc)) from None
        if not method.uses_weights and (self.dense_weight, self.sparse_weight) != (1.0, 1.0):
            raise UserInputError(
                f"branch weights apply to RRF fusion only: add --fusion rrf ({method.name} has no weights)"
            )
        if isinstance(self.fusion_params, Mapping):
            self.fusion_params = tuple(sorted(self.fusion_params.items()))
        method.check_params(dict(self.fusion_params))

    def resolved(self, manifest: Mapping[str, Any]) -> SearchOptions:
        """These options with ``fusion=None`` filled in from the collection's calibration, else the default."""
        if self.fusion is not None:
            return self
        tuned = manifest.get("fusion") or {}
        if not tuned:
            return replace(self, fusion=DEFAULT_FUSION)
        out = replace(
            self,
            fusion=tuned["method"],
            fusion_params=self.fusion_params or tuple(sorted(tuned.get("params", {}).items())),
        )
        if "rrf_k" in tuned and self.rrf_k == SearchOptions.rrf_k:
            out.rrf_k = int(tuned["rrf_k"])
        if "weights" in tuned and (self.dense_weight, self.sparse_weight) == (1.0, 1.0):
            out.dense_weight, out.sparse_weight = (float(w) for w in tuned["weights"])
        return out


def _check_filter(flt: SearchFilter) -> None:
    """Refuse a filter that can only ever match nothing because it is malformed, like an unknown key:
    an unknown file type, or a glob whose ``[`` never closes (fnmatch would take it literally)."""
    for t in flt.source_types:
        if canonical_source_type(t) is None:
            raise UserInputError(f"unknown file type {t!r} (types: {', '.join(source_types())})")
    if flt.path_glob is not None:
        _check_glob(flt.path_glob)


def _check_glob(pattern: str) -> None:
    if not pattern.strip():
        raise UserInputError("the path glob is empty (e.g. '*.md' or 'docs/*')")
    # Walk the pattern as fnmatch.translate does: '[' starts a class, '!' and a first ']' belong to it.
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c != "[":
            continue
        j = i
        if j < n and pattern[j] == "!":
            j += 1
        if j < n and pattern[j] == "]":
            j += 1
        while j < n and pattern[j] != "]":
            j += 1
        if j >= n:
            raise UserInputError(
                f"malformed path glob {pattern!r}: the '[' at position {i} is never closed "
                "(write '[[]' for a literal '[')"
            )
        i = j + 1


def _coerce(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    if value.lstrip("-").isdigit() and len(value) < 19:
        return int(value)
    return value


class Searcher:
    """An open collection with its model and lexical encoder, ready to answer queries."""

    def __init__(self, collection: Collection, embedder: Embedder, encoder: KiwiBM25Encoder) -> None:
        self.collection = collection
        self.embedder = embedder
        self.encoder = encoder

    def options(self, opts: SearchOptions | None = None) -> SearchOptions:
        """The options a search really runs with: the collection's calibrated fusion filled in, validated."""
        opts = (opts or SearchOptions()).resolved(self.collection.manifest)
        opts.validate()
        return opts

    @property
    def model_name(self) -> str:
        return self.collection.manifest["model"]["name"]

    # filters ----------------------------------------------------------------------------------------
    def _conditions(self, flt: SearchFilter | None) -> tuple[list[Condition], bool]:
        """Qdrant conditions for a filter, and whether exact search is needed (a key without an index).

        Always includes ``kind="chunk"``: the parts of a large document still being written carry vectors
        but another kind (engine/ingest.py), and must stay invisible until the document is complete.
        """
        live = Condition("kind", "chunk")
        if flt is None or flt.is_empty():
            return [live], False
        _check_filter(flt)
        store = self.collection.store
        conds: list[Condition] = [live]
        exact = False
        if flt.path_prefix or flt.path_glob:
            paths = [str(p) for p in store.distinct_values("path")]
            cwd = os.getcwd()
            keep = []
            for p in paths:
                rel = os.path.relpath(p, cwd) if os.path.isabs(p) else p
                names = (p, rel, Path(p).name)
                ok = True
                if flt.path_prefix:
                    prefix = flt.path_prefix
                    absprefix = str(Path(prefix).expanduser().resolve())
                    ok = (
                        p.startswith(absprefix) or rel.startswith(prefix.lstrip("./")) or p.startswith(prefix)
                    )
                if ok and flt.path_glob:
                    ok = any(fnmatch.fnmatchcase(n, flt.path_glob) for n in names)
                if ok:
                    keep.append(p)
            conds.append(Condition("path", keep))
        if flt.source_types:
            conds.append(
                Condition("source_type", sorted({canonical_source_type(t) for t in flt.source_types}))
            )
        for key, value in flt.where.items():
            field = key if key in CHUNK_KEYS or key.startswith("meta.") else f"meta.{key}"
            if not store.has_key(field):
                raise UnknownFilterKeyError(
                    f"no document in collection {self.collection.name!r} has the key {key!r} "
                    f"(built-in keys: {', '.join(k for k in CHUNK_KEYS if k not in ('kind', 'text'))}; "
                    "JSONL fields are matched as meta.<key>)"
                )
            if field in INTEGER_INDEXES:
                value = _coerce(value)
            elif field not in KEYWORD_INDEXES and field not in CHUNK_KEYS:
                value = _coerce(value)
                exact = True
            conds.append(Condition(field, value))
        return conds, exact

    # search -----------------------------------------------------------------------------------------
    def _spec(self, dense: np.ndarray | None, sparse, opts: SearchOptions, conds, exact: bool) -> QuerySpec:
        return QuerySpec(
            mode=opts.mode,
            limit=opts.k,
            dense=None if dense is None else dense.tolist(),
            sparse=sparse,
            prefetch_k=max(opts.prefetch_k, opts.k),
            fusion=opts.fusion or DEFAULT_FUSION,
            rrf_k=opts.rrf_k,
            weights=(opts.dense_weight, opts.sparse_weight),
            fusion_params=dict(opts.fusion_params),
            conditions=conds,
            exact=exact,
            hnsw_ef=opts.hnsw_ef or DEFAULT_HNSW_EF,
        )

    def search(
        self, query: str, opts: SearchOptions | None = None, flt: SearchFilter | None = None
    ) -> list[Hit]:
        return self.search_many([query], opts, flt)[0]

    def search_many(
        self,
        queries: Sequence[str],
        opts: SearchOptions | None = None,
        flt: SearchFilter | None = None,
        query_vectors: np.ndarray | None = None,
    ) -> list[list[Hit]]:
        """Search many queries with one embedding call.

        ``query_vectors`` (one row per query, from ``embedder.encode_queries``) lets a caller that searches the
        same queries several times — mining asks the served mode and each branch — embed them only once.
        """
        opts = self.options(opts)
        for q in queries:
            if not q or not q.strip():
                raise EmptyQueryError("the query is empty")
        if query_vectors is not None and len(query_vectors) != len(queries):
            raise UserInputError(f"{len(query_vectors)} query vectors for {len(queries)} queries")
        conds, exact = self._conditions(flt)
        exact = exact or opts.exact
        dense = None
        if opts.mode != "sparse":
            dense = (
                query_vectors if query_vectors is not None else self.embedder.encode_queries(list(queries))
            )
        out = []
        for i, q in enumerate(queries):
            sparse = self.encoder.encode_query(q) if opts.mode != "dense" else None
            raw = self.collection.store.query(
                self._spec(None if dense is None else dense[i], sparse, opts, conds, exact)
            )
            raw.sort(key=lambda r: (-r.score, r.id))  # equal (e.g. RRF) scores in a reproducible order
            out.append([_to_hit(r, rank) for rank, r in enumerate(raw, start=1)])
        return out


def _to_hit(raw: RawHit, rank: int) -> Hit:
    pl = raw.payload
    return Hit(
        rank=rank,
        score=raw.score,
        chunk_id=raw.id,
        doc_id=pl.get("doc_id", ""),
        text=pl.get("text", ""),
        path=pl.get("path", ""),
        title=pl.get("title", ""),
        chunk_index=int(pl.get("chunk_index", 0)),
        payload=pl,
        branches=raw.branches,
    )
