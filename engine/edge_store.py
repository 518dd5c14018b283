"""Qdrant Edge (``qdrant-edge-py``): the embedded default store, one shard directory per collection version.

Layout: ``<collections>/<name>/CURRENT`` holds the live version id; ``<collections>/<name>/<version>/`` is an
Edge shard. Switching versions is an ``os.replace`` of CURRENT, so a reader sees the old or the new version.
Edge's write-ahead log makes every update operation durable and whole, which the indexer relies on.

Safety at the filesystem boundary lives here, where a name becomes a path: every name passes
``names.check_collection_name`` in ``_dir``; versions must look like ``v0001``; destructive operations act only
on real (non-symlink) folders directly under the collections folder whose entries are kret's own; the lock
protocol of ``locks`` serialises creating, switching, gc and drop between processes; ``diskspace`` refuses a
write the filesystem could not back (Edge would die of SIGBUS instead).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from kret.engine import diskspace
from kret.engine.fusion import QdrantFusion
from kret.engine.locks import CollectionLocks, folder_in_use
from kret.engine.names import check_collection_name, collection_name_problem
from kret.engine.store import (
    CHUNK_KEYS,
    DENSE,
    INTEGER_INDEXES,
    KEYWORD_INDEXES,
    MANIFEST_ID,
    PART_KIND,
    PENDING_KIND,
    SPARSE,
    VERSION_RE,
    Backend,
    Condition,
    DocState,
    DocumentWrite,
    QuerySpec,
    RawHit,
    Store,
    check_version,
    manifest_point,
    marker_point,
    next_version,
    state_point,
)
from kret.engine.types import SparseVec, StoredPoint
from kret.errors import CollectionNotFoundError, IndexInUseError, StoreError, UserInputError

# What Qdrant Edge puts in a shard folder (temp_segments: its optimizer's workspace, kept between builds),
# and what kret puts in a collection folder: a folder holding anything else was not made by kret, and rm/gc
# refuse to delete it.
_SHARD_ENTRIES = frozenset({"edge_config.json", "segments", "temp_segments", "wal"})
_LOCK_DIR = ".locks"
# Shards this process holds open: a second open here would hit Edge's WAL lock too, but the cause (and the
# fix) is in the caller's own code, so it gets its own message.
_OPEN_HERE: set[str] = set()


def _edge():
    import qdrant_edge

    return qdrant_edge


def _store_error(exc: Exception, path: Path) -> Exception:
    text = str(exc)
    if "WouldBlock" in text or "lock" in text.lower() and "wal" in text.lower():
        return IndexInUseError(
            f"index {path} is in use by another kret process; wait for it to finish (embedded Qdrant Edge "
            "allows one process at a time — use a Qdrant server for concurrent access)"
        )
    return StoreError(f"Qdrant Edge failed on {path}: {text}")


class EdgeStore(Store):
    def __init__(
        self, path: Path, name: str, *, create: bool = False, optimize_every: int | None = None
    ) -> None:
        """``optimize_every``: also build the index (Edge's ``optimize()``) every this many points written, not
        only in ``finalize``. Off in kret: Qdrant Edge has no background optimizer, so a long write keeps
        everything in one appendable segment until the final build, and building in steps was meant to bound
        that — but at 204,800 synthetic chunks with a build every 100k points the process held 4.80 GB RSS
        (1.57 GB anonymous) against 2.0 GB without (bench/README §11, ``bench/store_scale.py --optimize-every``)."""
        self.path = path
        self.name = name
        self._shard = None
        self.optimize_every = optimize_every
        self._unindexed = 0
        if not create:
            self._open()

    def _open(self) -> None:
        q = _edge()
        key = str(self.path.resolve())
        if key in _OPEN_HERE:
            raise IndexInUseError(
                f"index {self.path} is already open in this process (an open Searcher or retriever): "
                "reuse it or close it first — embedded Qdrant Edge allows one opener"
            )
        # Loading a shard touches its memory-mapped, pre-allocated files: on a full disk that is a SIGBUS
        # in this process (measured: open on a full tmpfs killed both the indexer and a reader).
        _allocated, unbacked = diskspace.shard_usage(self.path)
        diskspace.ensure_free(
            self.path, diskspace.required_for_open(unbacked), f"open collection {self.name!r}"
        )
        try:
            self._shard = q.EdgeShard.load(str(self.path))
        except Exception as exc:
            raise _store_error(exc, self.path) from None
        _OPEN_HERE.add(key)

    @property
    def shard(self):
        if self._shard is None:
            raise StoreError(f"collection {self.name} is closed")
        return self._shard

    def _update(self, op) -> None:
        self._call("update", op)

    def _call(self, method: str, *args, **kwargs):
        """Every shard call goes through here so Edge's bare exceptions become kret's typed errors."""
        try:
            return getattr(self.shard, method)(*args, **kwargs)
        except Exception as exc:
            raise _store_error(exc, self.path) from None

    # lifecycle ------------------------------------------------------------------------------------
    def create(self, dimension: int, manifest: dict[str, Any]) -> None:
        q = _edge()
        config = q.EdgeConfig(
            vectors={DENSE: q.EdgeVectorParams(size=dimension, distance=q.Distance.Cosine)},
            sparse_vectors={SPARSE: q.EdgeSparseVectorParams(modifier=q.Modifier.Idf)},
        )
        try:
            self._shard = q.EdgeShard.create(str(self.path), config)
        except Exception as exc:
            raise _store_error(exc, self.path) from None
        _OPEN_HERE.add(str(self.path.resolve()))
        for key in KEYWORD_INDEXES:
            self._update(q.UpdateOperation.create_field_index(key, q.PayloadSchemaType.Keyword))
        for key in INTEGER_INDEXES:
            self._update(q.UpdateOperation.create_field_index(key, q.PayloadSchemaType.Integer))
        self.write_manifest(manifest)

    def close(self) -> None:
        if self._shard is not None:
            try:
                self._shard.flush()
                self._shard.close()
            except Exception as exc:
                # e.g. the shard's files were deleted under it: one line, not Edge's raw message
                raise _store_error(exc, self.path) from None
            finally:
                self._shard = None
                _OPEN_HERE.discard(str(self.path.resolve()))

    def finalize(self) -> None:
        self._build_index()
        self._call("flush")

    def _build_index(self) -> None:
        allocated, unbacked = diskspace.shard_usage(self.path)
        diskspace.ensure_free(
            self.path,
            diskspace.required_for_finalize(allocated, unbacked),
            f"build the search index of collection {self.name!r}",
            outcome="the documents written so far are stored and searchable, but the search index (HNSW) "
            "was not built (a reindex discards its new version)",
        )
        self._call("optimize")
        self._unindexed = 0

    # manifest and documents ---------------------------------------------------------------------------
    def read_manifest(self) -> dict[str, Any]:
        recs = self._call("retrieve", [MANIFEST_ID], with_payload=True, with_vector=False)
        if not recs:
            raise StoreError(self._missing_manifest())
        return json.loads(recs[0].payload["data"])

    def _missing_manifest(self) -> str:
        """Why no manifest was found: a damaged shard (say which files are gone) or a foreign one.

        Qdrant finds points through each segment's id tracker; without its files a segment's points
        (the manifest among them) are invisible although their payloads are still on disk, which is
        damage to report as such, not a folder "not created by kret".
        """
        missing = []
        for segment in sorted((self.path / "segments").glob("*/")):
            names = {f.name for f in segment.iterdir()}
            stem = "mutable_id_tracker" if any(n.startswith("mutable_id_tracker") for n in names) else ""
            stem = stem or ("id_tracker" if any(n.startswith("id_tracker") for n in names) else "")
            if not stem:
                missing.append(f"{segment.name}: id tracker (mutable_id_tracker.mappings/.versions)")
                continue
            gone = [f"{stem}.{ext}" for ext in ("mappings", "versions") if f"{stem}.{ext}" not in names]
            if gone:
                missing.append(f"{segment.name}: {', '.join(gone)}")
        where = f"collection {self.name!r} ({self.path.name})"
        if missing:
            return (
                f"{where} is damaged: its manifest is unreachable because segment files are missing "
                f"({'; '.join(missing)}); restore the folder from a backup or rebuild the collection"
            )
        return f"{where} has no manifest (not created by kret?)"

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        self._upsert([manifest_point(manifest)])

    def _point(self, p: StoredPoint):
        q = _edge()
        vector: dict[str, Any] = {}
        if p.dense is not None:
            vector[DENSE] = list(map(float, p.dense))
        if p.sparse is not None and len(p.sparse):
            vector[SPARSE] = q.SparseVector(indices=list(p.sparse.indices), values=list(p.sparse.values))
        return q.Point(id=p.id, vector=vector, payload=p.payload)

    def _upsert(self, points: Sequence[StoredPoint]) -> None:
        q = _edge()
        self._update(q.UpdateOperation.upsert_points([self._point(p) for p in points]))
        if self.optimize_every is not None:
            self._unindexed += len(points)
            if self._unindexed >= self.optimize_every:
                self._build_index()

    def _filter(self, conditions: Sequence[Condition]):
        q = _edge()
        must = []
        for c in conditions:
            if isinstance(c.value, list | tuple):
                values = list(c.value)
                if not values:
                    # Nothing can match an empty set: a condition no point satisfies.
                    must.append(q.FieldCondition(key="kind", match=q.MatchValue("\0none")))
                    continue
                must.append(q.FieldCondition(key=c.key, match=q.MatchAny(values)))
            else:
                must.append(q.FieldCondition(key=c.key, match=q.MatchValue(c.value)))
        return q.Filter(must=must) if must else None

    def _states(self, kind: str) -> dict[str, DocState]:
        """Markers of one kind (final ``doc`` or ``pending``) by document id."""
        out: dict[str, DocState] = {}
        for rec in self._scroll([Condition("kind", kind)], with_vectors=False, batch=2048):
            state = DocState.from_payload(rec.payload or {})
            out[state.doc_id] = state
        return out

    def doc_states(self) -> dict[str, DocState]:
        return self._states("doc")

    def write_documents(self, writes: Sequence[DocumentWrite]) -> None:
        if not writes:
            return
        q = _edge()
        ids = [w.doc_id for w in writes]
        points: list[StoredPoint] = []
        for w in writes:
            points.extend(w.points)
            points.append(marker_point(w))
        # Before the delete: a refused batch leaves these documents as they were.
        self._ensure_room_for(points, f"write {len(writes)} document(s) into collection {self.name!r}")
        self._update(q.UpdateOperation.delete_points_by_filter(self._filter([Condition("doc_id", ids)])))
        self._upsert(points)

    def delete_documents(self, doc_ids: Sequence[str]) -> None:
        if doc_ids:
            q = _edge()
            self._update(
                q.UpdateOperation.delete_points_by_filter(self._filter([Condition("doc_id", list(doc_ids))]))
            )

    def pending_documents(self) -> dict[str, DocState]:
        return self._states(PENDING_KIND)

    def write_part(self, state: DocState, points: Sequence[StoredPoint]) -> None:
        # One operation: a part is there with its pending marker, or not at all. A refused part leaves the
        # parts already committed, so the next run resumes there.
        batch = [*points, state_point(state, PENDING_KIND)]
        self._ensure_room_for(
            batch,
            f"write part of {state.doc_id!r} into collection {self.name!r}",
            outcome="the parts written before are kept and the next `kret index` resumes after them",
        )
        self._upsert(batch)

    def _ensure_room_for(self, points: Sequence[StoredPoint], what: str, **kw: str) -> None:
        """Refuse (DiskSpaceError) a write the disk cannot back: Edge's mmap'd files would SIGBUS instead."""
        _allocated, unbacked = diskspace.shard_usage(self.path)
        needed = diskspace.required_for_batch(unbacked, diskspace.batch_bytes(points))
        diskspace.ensure_free(self.path, needed, what, **kw)

    def commit_parts(self, state: DocState) -> None:
        q = _edge()
        parts = self._filter([Condition("doc_id", state.doc_id), Condition("kind", PART_KIND)])
        self._update(q.UpdateOperation.set_payload_by_filter(parts, {"kind": "chunk"}))
        self._upsert([state_point(state, "doc")])

    # reading --------------------------------------------------------------------------------------
    def _scroll(self, conditions: Sequence[Condition], *, with_vectors: bool, batch: int) -> Iterator[Any]:
        q = _edge()
        offset = None
        flt = self._filter(conditions)
        while True:
            recs, offset = self._call(
                "scroll",
                q.ScrollRequest(
                    offset=offset, limit=batch, filter=flt, with_payload=True, with_vector=with_vectors
                ),
            )
            yield from recs
            if offset is None or not recs:
                return

    def scroll_chunks(self, *, with_vectors: bool = False, batch: int = 512) -> Iterator[StoredPoint]:
        for rec in self._scroll([Condition("kind", "chunk")], with_vectors=with_vectors, batch=batch):
            dense = sparse = None
            if with_vectors and rec.vector:
                vec = rec.vector
                dense = vec.get(DENSE)
                sv = vec.get(SPARSE)
                if sv is not None:
                    sparse = SparseVec(list(sv.indices), list(sv.values))
            yield StoredPoint(id=str(rec.id), dense=dense, sparse=sparse, payload=rec.payload or {})

    def count_chunks(self) -> int:
        q = _edge()
        return self._call(
            "count", q.CountRequest(exact=True, filter=self._filter([Condition("kind", "chunk")]))
        )

    def distinct_values(self, key: str, limit: int = 100_000) -> list[Any]:
        q = _edge()
        resp = self._call(
            "facet",
            q.FacetRequest(
                key=key, limit=limit, exact=True, filter=self._filter([Condition("kind", "chunk")])
            ),
        )
        return [hit.value for hit in resp.hits]

    def has_key(self, key: str) -> bool:
        q = _edge()
        flt = q.Filter(
            must=[q.FieldCondition(key="kind", match=q.MatchValue("chunk"))],
            must_not=[q.IsEmptyCondition(key=key)],
        )
        return self._call("count", q.CountRequest(exact=True, filter=flt)) > 0

    def _run_branches(
        self, spec: QuerySpec, branches: list[str], fusion: QdrantFusion | None
    ) -> tuple[dict[str, list[tuple[str, float]]], list[RawHit]]:
        q = _edge()
        flt = self._filter(spec.conditions)
        params = (
            q.SearchParams(exact=spec.exact, hnsw_ef=spec.hnsw_ef)
            if spec.exact or spec.hnsw_ef is not None
            else None
        )
        hybrid = len(branches) > 1

        def nearest(branch: str):
            if branch == "dense":
                return q.Query.Nearest(list(map(float, spec.dense)), using=DENSE)
            sv = spec.sparse
            return q.Query.Nearest(
                q.SparseVector(indices=list(sv.indices), values=list(sv.values)), using=SPARSE
            )

        requests = [
            q.QueryRequest(
                limit=spec.prefetch_k if hybrid else spec.limit,
                query=nearest(b),
                filter=flt,
                params=params,
                with_payload=spec.with_payload and not hybrid,
            )
            for b in branches
        ]
        if fusion is not None:
            if fusion.kind == "dbsf":
                query = q.Fusion.Dbsf()
            else:
                query = q.Fusion.Rrf(
                    k=fusion.k, weights=None if fusion.weights is None else list(fusion.weights)
                )
            prefetches = [
                q.Prefetch(limit=spec.prefetch_k, query=nearest(b), filter=flt, params=params)
                for b in branches
            ]
            requests.append(
                q.QueryRequest(
                    limit=spec.limit,
                    prefetches=prefetches,
                    query=query,
                    filter=flt,
                    with_payload=spec.with_payload,
                )
            )
        results = self._call("query_batch", q.QueryBatchRequest(requests))
        branch_lists = {
            b: [(str(p.id), float(p.score)) for p in res] for b, res in zip(branches, results, strict=False)
        }
        if hybrid and fusion is None:
            return branch_lists, []
        final = results[-1]
        return branch_lists, [
            RawHit(id=str(p.id), score=float(p.score), payload=p.payload or {}) for p in final
        ]

    def _payloads(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        recs = self._call("retrieve", list(ids), with_payload=True, with_vector=False)
        return {str(r.id): r.payload or {} for r in recs}


class EdgeBackend(Backend):
    kind = "edge"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.locks = CollectionLocks(root / _LOCK_DIR)

    # paths: the one place a name becomes a path ------------------------------------------------------
    def _dir(self, name: str) -> Path:
        return self.root / check_collection_name(name)

    def _version_dir(self, name: str, version: str) -> Path:
        return self._dir(name) / check_version(version)

    def _owned_dir(self, path: Path, parent: Path, what: str) -> Path:
        """``path`` itself when it is a real folder (not a symlink) whose real parent is ``parent``;
        otherwise refuse to touch it: rm and gc delete only what kret made under the collections folder."""
        if path.is_symlink() or not path.is_dir() or path.resolve().parent != parent.resolve():
            raise UserInputError(
                f"refusing to remove {path}: {what} is not a folder kret made under {self.root.resolve()}"
            )
        return path

    # Backend ------------------------------------------------------------------------------------------
    def list_collections(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if collection_name_problem(p.name) is None and (p / "CURRENT").is_file()
        )

    def stored_names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if collection_name_problem(p.name) is None
            and p.is_dir()
            and not p.is_symlink()
            and ((p / "CURRENT").is_file() or self.versions(p.name))
        )

    def live_version(self, name: str) -> str | None:
        pointer = self._dir(name) / "CURRENT"
        if not pointer.is_file():
            return None
        try:
            version = pointer.read_bytes().decode("ascii").strip()
        except UnicodeDecodeError:
            version = "\ufffd"
        if version and not VERSION_RE.match(version):
            # Damage (or a foreign file): never follow it as a path, never decode garbage into a traceback.
            raise StoreError(
                f"collection {name!r} is damaged: {pointer} should name a version like v0001; "
                "write the live version's name into it, or remove the collection"
            )
        return version or None

    def versions(self, name: str) -> list[str]:
        d = self._dir(name)
        if not d.is_dir():
            return []
        return sorted(
            p.name for p in d.iterdir() if VERSION_RE.match(p.name) and p.is_dir() and not p.is_symlink()
        )

    def open_version(self, name: str, version: str) -> Store:
        path = self._version_dir(name, version)
        if not path.is_dir():
            raise CollectionNotFoundError(f"collection {name!r} has no version {version}")
        return EdgeStore(path, name)

    def new_version(self, name: str) -> tuple[str, Store]:
        d = self._dir(name)
        with self.mutation(name):
            diskspace.ensure_free(
                self.root,
                diskspace.required_for_new_version(),
                f"create a new version of collection {name!r}",
            )
            d.mkdir(parents=True, exist_ok=True)
            version = next_version(self.versions(name))
            self.locks.begin_build(name, version)
            try:
                # The folder exists before the mutation lock is released: the next creator numbers past it
                # and gc sees it together with its held build lock.
                (d / version).mkdir()
            except BaseException:
                self.locks.end_build(name, version)
                raise
        return version, EdgeStore(d / version, name, create=True)

    def activate(self, name: str, version: str) -> None:
        d = self._dir(name)
        with self.mutation(name):
            if not self._version_dir(name, version).is_dir():
                raise CollectionNotFoundError(f"collection {name!r} has no version {version}")
            tmp = d / f".CURRENT.{os.getpid()}.tmp"
            tmp.write_text(version + "\n")
            os.replace(tmp, d / "CURRENT")
            self.locks.end_build(name, version)

    def drop_version(self, name: str, version: str) -> None:
        path = self._version_dir(name, version)
        with self.mutation(name):
            if self.live_version(name) == version:
                raise UserInputError(
                    f"version {version} is the live version of {name!r}; drop the collection instead"
                )
            self.locks.refuse_if_built_elsewhere(name, version)
            if path.is_dir():
                self._remove_version_folder(name, path)
            self.locks.forget_build(name, version)

    def _remove_version_folder(self, name: str, path: Path) -> None:
        self._owned_dir(self._dir(name), self.root, f"collection folder {name!r}")
        self._owned_dir(path, self._dir(name), f"version folder {path.name}")
        strange = sorted(p.name for p in path.iterdir() if p.name not in _SHARD_ENTRIES)
        if strange:
            raise UserInputError(
                f"refusing to remove {path}: it holds {', '.join(strange[:5])}, which Qdrant Edge does not make"
            )
        if folder_in_use(path):
            raise IndexInUseError(f"version {path.name} of {name!r} is open in another kret process")
        shutil.rmtree(path)

    def drop(self, name: str) -> None:
        d = self._dir(name)
        if not d.exists() and not d.is_symlink():
            return
        with self.writer(name), self.mutation(name):
            self._owned_dir(d, self.root, f"collection folder {name!r}")
            strange = sorted(
                p.name
                for p in d.iterdir()
                if p.name != "CURRENT" and not p.name.startswith(".CURRENT.") and not VERSION_RE.match(p.name)
            )
            if strange:
                raise UserInputError(
                    f"refusing to remove {d}: it holds {', '.join(strange[:5])}, which kret does not make"
                )
            for version in self.versions(name):
                self.locks.refuse_if_built_elsewhere(name, version)
                if folder_in_use(d / version):
                    raise IndexInUseError(f"collection {name!r} is open in another kret process ({version})")
            # Remove the pointer first: a crash half-way leaves no collection that looks live.
            (d / "CURRENT").unlink(missing_ok=True)
            for version in self.versions(name):
                self._remove_version_folder(name, d / version)
                self.locks.end_build(name, version)
            shutil.rmtree(d)


__all__ = ["EdgeBackend", "EdgeStore", "CHUNK_KEYS"]
