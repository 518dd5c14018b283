"""Qdrant server or cluster through ``qdrant-client``: the store for shared and concurrent access.

Layout: every version of a collection is a real Qdrant collection ``{prefix}_{name}__{version}``; the live
one is the target of the alias ``{prefix}_{name}``. Switching versions is one ``update_collection_aliases``
call (delete + create together), which Qdrant applies atomically, so a reader sees the old or the new
version. Behaviour mirrors ``edge_store`` point for point; the contract suite runs both.

``QdrantClient(":memory:")`` (qdrant-client's local mode) runs this same code in-process, which is how it is
tested without a server. Local mode in qdrant-client 1.20 supports everything used here (aliases,
parametrised RRF, DBSF, facets, the IDF modifier); payload indexes are accepted there but have no effect.
"""

from __future__ import annotations

import json
import math
import re
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from kret.engine.fusion import QdrantFusion
from kret.engine.locks import CollectionLocks
from kret.engine.names import check_collection_name
from kret.engine.server_errors import describe_client, one_line, translate_error
from kret.engine.server_lease import ServerLeases
from kret.engine.server_lease import describe as describe_lease
from kret.engine.store import (
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

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
# Points per upsert request: keeps one request well under the server's request-size limit (32 MiB REST).
_UPSERT_BATCH = 256
# How long ``finalize`` waits for the background optimizer before leaving it to finish on its own.
_FINALIZE_WAIT_S = 60.0
_T = TypeVar("_T")


def _warn_if_incompatible(client: QdrantClient, url: str) -> None:
    """Qdrant's rule: client and server majors must match and minors differ by at most one."""
    try:
        from importlib.metadata import version

        from qdrant_client.common.version_check import is_compatible

        client_version = version("qdrant-client")
        server_version = client.info().version
    except Exception:
        return  # the version is a courtesy check; the probe already showed the server works
    if not is_compatible(client_version, server_version):
        warnings.warn(
            f"qdrant-client {client_version} may not work with the Qdrant {server_version} at {url} "
            "(majors must match, minors differ by at most one)",
            UserWarning,
            stacklevel=3,
        )


class ServerStore(Store):
    """One version of one collection: a single Qdrant collection addressed by its real name, never the
    alias, so a store opened on a version keeps reading it even while another version is activated."""

    def __init__(
        self,
        client: QdrantClient,
        collection: str,
        name: str,
        version: str,
        *,
        where: str | None = None,
        shard_number: int | None = None,
        replication_factor: int | None = None,
        write_consistency_factor: int | None = None,
    ) -> None:
        self.client: QdrantClient | None = client
        self.collection = collection
        self.name = name
        self.version = version
        self.where = where or describe_client(client)
        self._shard_number = shard_number
        self._replication_factor = replication_factor
        self._write_consistency_factor = write_consistency_factor
        # qdrant-client's local mode (":memory:" or a path) always scans every vector and warns on every query
        # that names an HNSW width; the width means nothing there, so it is not sent.
        opts = getattr(client, "init_options", None) or {}
        self._local = opts.get("location") == ":memory:" or bool(opts.get("path"))

    # plumbing ---------------------------------------------------------------------------------------
    def _call(self, fn: Callable[[QdrantClient], _T]) -> _T:
        if self.client is None:
            raise StoreError(f"collection {self.name} is closed")
        try:
            return fn(self.client)
        except Exception as exc:
            missing = (
                f"collection {self.name!r} version {self.version} does not exist on Qdrant at {self.where} "
                "(dropped, or never created?)"
            )
            raise translate_error(exc, self.where, missing) from None

    def _filter(self, conditions: Sequence[Condition]) -> Any:
        from pydantic import ValidationError
        from qdrant_client import models

        must: list[Any] = []
        for c in conditions:
            try:
                if isinstance(c.value, list | tuple):
                    values = list(c.value)
                    if not values:
                        # Nothing can match an empty set: a condition no point satisfies (as in Edge).
                        must.append(
                            models.FieldCondition(key="kind", match=models.MatchValue(value="\0none"))
                        )
                        continue
                    must.append(models.FieldCondition(key=c.key, match=models.MatchAny(any=values)))
                else:
                    must.append(models.FieldCondition(key=c.key, match=models.MatchValue(value=c.value)))
            except ValidationError:
                raise UserInputError(
                    f"filter on {c.key!r}: {c.value!r} is not a string, integer or boolean (or a list of one type)"
                ) from None
        return models.Filter(must=must) if must else None

    def _point(self, p: StoredPoint) -> Any:
        from qdrant_client import models

        vector: dict[str, Any] = {}
        if p.dense is not None:
            vector[DENSE] = [float(x) for x in p.dense]
        if p.sparse is not None and len(p.sparse):
            vector[SPARSE] = models.SparseVector(
                indices=[int(i) for i in p.sparse.indices], values=[float(v) for v in p.sparse.values]
            )
        return models.PointStruct(id=p.id, vector=vector, payload=p.payload)

    def _upsert(self, points: Sequence[StoredPoint]) -> None:
        built = [self._point(p) for p in points]
        for start in range(0, len(built), _UPSERT_BATCH):
            chunk = built[start : start + _UPSERT_BATCH]
            self._call(lambda c, chunk=chunk: c.upsert(self.collection, points=chunk, wait=True))

    # lifecycle ------------------------------------------------------------------------------------
    def create(self, dimension: int, manifest: dict[str, Any]) -> None:
        from qdrant_client import models

        extra: dict[str, int] = {}
        if self._shard_number is not None:
            extra["shard_number"] = self._shard_number
        if self._replication_factor is not None:
            extra["replication_factor"] = self._replication_factor
        if self._write_consistency_factor is not None:
            extra["write_consistency_factor"] = self._write_consistency_factor

        def make(c: QdrantClient) -> None:
            try:
                if not c.collection_exists(self.collection):
                    c.create_collection(
                        self.collection,
                        vectors_config={
                            DENSE: models.VectorParams(size=dimension, distance=models.Distance.COSINE)
                        },
                        sparse_vectors_config={
                            SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)
                        },
                        **extra,
                    )
                    return
            except Exception:
                if not c.collection_exists(self.collection):
                    raise
            # It exists and this process did not make it: the server's create-if-absent is the one check that
            # reaches other machines, so two creators of one version never write into each other's.
            self.made_elsewhere = True
            raise IndexInUseError(
                f"version {self.version} of {self.name!r} already exists on Qdrant at {self.where}: another kret "
                "process (on another machine?) is building it; try again when it has finished"
            )

        self._call(make)
        # Indexes go in before any data, so the server builds HNSW with them (docs/qdrant.md, gotcha 1).
        with warnings.catch_warnings():
            # Local mode warns that payload indexes are no-ops there; that is expected and harmless.
            warnings.filterwarnings("ignore", message="Payload indexes have no effect")
            for key in KEYWORD_INDEXES:
                self._call(
                    lambda c, key=key: c.create_payload_index(
                        self.collection, key, field_schema=models.PayloadSchemaType.KEYWORD, wait=True
                    )
                )
            for key in INTEGER_INDEXES:
                self._call(
                    lambda c, key=key: c.create_payload_index(
                        self.collection, key, field_schema=models.PayloadSchemaType.INTEGER, wait=True
                    )
                )
        self.write_manifest(manifest)

    def close(self) -> None:
        # The client belongs to the backend (one connection pool for all stores); only forget it here.
        self.client = None

    def finalize(self) -> None:
        """A server optimises in the background; wait a while for it so the first searches are fast, and
        surface an optimizer failure (status red) instead of letting searches degrade silently."""
        from qdrant_client import models

        deadline = time.monotonic() + _FINALIZE_WAIT_S
        while True:
            info = self._call(lambda c: c.get_collection(self.collection))
            if info.status == models.CollectionStatus.RED:
                status = info.optimizer_status
                detail = getattr(status, "error", status)
                raise StoreError(f"Qdrant optimizer failed on {self.collection} at {self.where}: {detail}")
            if info.status != models.CollectionStatus.YELLOW or time.monotonic() >= deadline:
                return
            time.sleep(0.5)

    # manifest and documents ---------------------------------------------------------------------------
    def read_manifest(self) -> dict[str, Any]:
        recs = self._call(
            lambda c: c.retrieve(self.collection, [MANIFEST_ID], with_payload=True, with_vectors=False)
        )
        if not recs:
            raise StoreError(f"collection {self.name} has no manifest (not created by kret?)")
        return json.loads((recs[0].payload or {})["data"])

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        self._upsert([manifest_point(manifest)])

    def doc_states(self) -> dict[str, DocState]:
        out: dict[str, DocState] = {}
        for rec in self._scroll([Condition("kind", "doc")], with_vectors=False, batch=2048):
            state = DocState.from_payload(rec.payload or {})
            out[state.doc_id] = state
        return out

    def write_documents(self, writes: Sequence[DocumentWrite]) -> None:
        """Delete the documents' old points, then upsert chunks and markers, each document's marker after
        its chunks: if a large write is cut between requests, a document without its marker is simply
        re-indexed next time (its stray chunks are deleted first), as the indexer expects."""
        if not writes:
            return
        from qdrant_client import models

        flt = self._filter([Condition("doc_id", [w.doc_id for w in writes])])
        points: list[StoredPoint] = []
        for w in writes:
            points.extend(w.points)
            points.append(marker_point(w))
        built = [self._point(p) for p in points]
        first, rest = built[:_UPSERT_BATCH], built[_UPSERT_BATCH:]
        # Delete and the first upsert travel in one request: applied in order, one round trip.
        ops = [
            models.DeleteOperation(delete=models.FilterSelector(filter=flt)),
            models.UpsertOperation(upsert=models.PointsList(points=first)),
        ]
        self._call(lambda c: c.batch_update_points(self.collection, update_operations=ops, wait=True))
        for start in range(0, len(rest), _UPSERT_BATCH):
            chunk = rest[start : start + _UPSERT_BATCH]
            self._call(lambda c, chunk=chunk: c.upsert(self.collection, points=chunk, wait=True))

    def delete_documents(self, doc_ids: Sequence[str]) -> None:
        if not doc_ids:
            return
        from qdrant_client import models

        selector = models.FilterSelector(filter=self._filter([Condition("doc_id", list(doc_ids))]))
        self._call(lambda c: c.delete(self.collection, points_selector=selector, wait=True))

    def pending_documents(self) -> dict[str, DocState]:
        out: dict[str, DocState] = {}
        for rec in self._scroll([Condition("kind", PENDING_KIND)], with_vectors=False, batch=2048):
            state = DocState.from_payload(rec.payload or {})
            out[state.doc_id] = state
        return out

    def write_part(self, state: DocState, points: Sequence[StoredPoint]) -> None:
        # Several requests for a big part, the pending marker last: a part cut short is redone on resume
        # (point ids are deterministic, so the redo overwrites what had landed).
        self._upsert([*points, state_point(state, PENDING_KIND)])

    def commit_parts(self, state: DocState) -> None:
        from qdrant_client import models

        parts = self._filter([Condition("doc_id", state.doc_id), Condition("kind", PART_KIND)])
        ops = [
            models.SetPayloadOperation(
                set_payload=models.SetPayload(payload={"kind": "chunk"}, filter=parts)
            ),
            models.UpsertOperation(upsert=models.PointsList(points=[self._point(state_point(state, "doc"))])),
        ]
        # One request, applied in order: the chunks go live, then the marker says the document is complete.
        self._call(lambda c: c.batch_update_points(self.collection, update_operations=ops, wait=True))

    # reading --------------------------------------------------------------------------------------
    def _scroll(self, conditions: Sequence[Condition], *, with_vectors: bool, batch: int) -> Iterator[Any]:
        flt = self._filter(conditions)
        offset = None
        while True:
            recs, offset = self._call(
                lambda c, offset=offset: c.scroll(
                    self.collection,
                    scroll_filter=flt,
                    limit=batch,
                    offset=offset,
                    with_payload=True,
                    with_vectors=with_vectors,
                )
            )
            yield from recs
            if offset is None or not recs:
                return

    def scroll_chunks(self, *, with_vectors: bool = False, batch: int = 512) -> Iterator[StoredPoint]:
        for rec in self._scroll([Condition("kind", "chunk")], with_vectors=with_vectors, batch=batch):
            dense = sparse = None
            if with_vectors and isinstance(rec.vector, dict):
                vec = rec.vector
                if vec.get(DENSE) is not None:
                    dense = [float(x) for x in vec[DENSE]]
                sv = vec.get(SPARSE)
                if sv is not None:
                    sparse = SparseVec(list(sv.indices), list(sv.values))
            yield StoredPoint(id=str(rec.id), dense=dense, sparse=sparse, payload=rec.payload or {})

    def count_chunks(self) -> int:
        flt = self._filter([Condition("kind", "chunk")])
        return self._call(lambda c: c.count(self.collection, count_filter=flt, exact=True)).count

    def distinct_values(self, key: str, limit: int = 100_000) -> list[Any]:
        flt = self._filter([Condition("kind", "chunk")])
        resp = self._call(
            lambda c: c.facet(self.collection, key=key, facet_filter=flt, limit=limit, exact=True)
        )
        return [hit.value for hit in resp.hits]

    def has_key(self, key: str) -> bool:
        from qdrant_client import models

        flt = models.Filter(
            must=[models.FieldCondition(key="kind", match=models.MatchValue(value="chunk"))],
            must_not=[models.IsEmptyCondition(is_empty=models.PayloadField(key=key))],
        )
        return self._call(lambda c: c.count(self.collection, count_filter=flt, exact=True)).count > 0

    def _run_branches(
        self, spec: QuerySpec, branches: list[str], fusion: QdrantFusion | None
    ) -> tuple[dict[str, list[tuple[str, float]]], list[RawHit]]:
        from qdrant_client import models

        flt = self._filter(spec.conditions)
        hnsw_ef = None if self._local else spec.hnsw_ef
        params = (
            models.SearchParams(exact=spec.exact, hnsw_ef=hnsw_ef)
            if spec.exact or hnsw_ef is not None
            else None
        )
        hybrid = len(branches) > 1

        def nearest(branch: str) -> tuple[Any, str]:
            if branch == "dense":
                if spec.dense is None:
                    raise ValueError("a dense branch needs QuerySpec.dense")
                return models.NearestQuery(nearest=[float(x) for x in spec.dense]), DENSE
            sv = spec.sparse
            assert sv is not None  # branch_plan only plans a sparse branch for a non-empty vector
            vec = models.SparseVector(
                indices=[int(i) for i in sv.indices], values=[float(v) for v in sv.values]
            )
            return models.NearestQuery(nearest=vec), SPARSE

        requests = []
        for b in branches:
            query, using = nearest(b)
            requests.append(
                models.QueryRequest(
                    query=query,
                    using=using,
                    filter=flt,
                    params=params,
                    limit=spec.prefetch_k if hybrid else spec.limit,
                    with_payload=spec.with_payload and not hybrid,
                )
            )
        if fusion is not None:
            if fusion.kind == "dbsf":
                fused: Any = models.FusionQuery(fusion=models.Fusion.DBSF)
            else:
                # k is always explicit: the server's implicit RRF k differs from kret's default of 60.
                weights = None if fusion.weights is None else list(fusion.weights)
                fused = models.RrfQuery(rrf=models.Rrf(k=fusion.k, weights=weights))
            prefetch = []
            for b in branches:
                query, using = nearest(b)
                prefetch.append(
                    models.Prefetch(
                        query=query, using=using, filter=flt, params=params, limit=spec.prefetch_k
                    )
                )
            requests.append(
                models.QueryRequest(
                    prefetch=prefetch,
                    query=fused,
                    filter=flt,
                    limit=spec.limit,
                    with_payload=spec.with_payload,
                )
            )
        results = self._call(lambda c: c.query_batch_points(self.collection, requests=requests))
        branch_lists = {
            b: [(str(p.id), float(p.score)) for p in res.points]
            for b, res in zip(branches, results, strict=False)
        }
        if hybrid and fusion is None:
            return branch_lists, []
        final = results[-1].points
        return branch_lists, [
            RawHit(id=str(p.id), score=float(p.score), payload=p.payload or {}) for p in final
        ]

    def _payloads(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        recs = self._call(
            lambda c: c.retrieve(self.collection, list(ids), with_payload=True, with_vectors=False)
        )
        return {str(r.id): r.payload or {} for r in recs}


class ServerBackend(Backend):
    """Collections on a Qdrant server (or cluster), versioned with real collections behind one alias each."""

    kind = "server"

    def __init__(
        self,
        client: QdrantClient,
        *,
        prefix: str = "kret",
        shard_number: int | None = None,
        replication_factor: int | None = None,
        write_consistency_factor: int | None = None,
        where: str | None = None,
        lock_dir: Path | None = None,
        leases: bool = False,
    ) -> None:
        if not _NAME_RE.match(prefix):
            raise UserInputError(
                f"Qdrant collection prefix {prefix!r} may hold only letters, digits, '-' and '_'"
            )
        self.client = client
        self.prefix = prefix
        self.shard_number = shard_number
        self.replication_factor = replication_factor
        self.write_consistency_factor = write_consistency_factor
        self.where = where or describe_client(client)
        # The kret processes of this machine that share the server follow engine.locks' protocol there.
        self.locks = CollectionLocks(lock_dir) if lock_dir is not None else None
        # Across machines, writers hold a lease on the server (engine.server_lease); "-" cannot follow the
        # prefix in any name of ours (collections are "<prefix>_<name>…"), so the lease collection is apart.
        self.leases = ServerLeases(client, f"{prefix}-leases", call=self._call) if leases else None

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        api_key: str | None = None,
        prefer_grpc: bool = False,
        timeout: float = 30.0,
        prefix: str = "kret",
        shard_number: int | None = None,
        replication_factor: int | None = None,
        write_consistency_factor: int | None = None,
        lock_dir: Path | None = None,
        leases: bool = False,
    ) -> ServerBackend:
        """Connect and check the server answers now, so a wrong URL or a down server fails at start-up with
        one clear line rather than deep inside an ingest. ``url=":memory:"`` is qdrant-client's local mode.
        ``timeout`` is in seconds (rounded up to a whole second, at least 1: the client takes an int).
        ``lock_dir``: where this machine's kret processes keep their lock files for this server. ``leases``:
        writers also hold a lease on the server, which serialises writers on different machines."""
        from qdrant_client import QdrantClient

        if url == ":memory:":
            client = QdrantClient(":memory:")
        else:
            try:
                client = QdrantClient(
                    url=url,
                    api_key=api_key,
                    prefer_grpc=prefer_grpc,
                    timeout=max(1, math.ceil(timeout)),
                    # The client's own check runs in a thread and only warns; ours below runs after the
                    # reachability probe, so a down server gives one error, not a warning and an error.
                    check_compatibility=False,
                )
            except Exception as exc:
                raise StoreError(f"cannot connect to Qdrant at {url}: {one_line(exc)}") from None
        backend = cls(
            client,
            prefix=prefix,
            shard_number=shard_number,
            replication_factor=replication_factor,
            write_consistency_factor=write_consistency_factor,
            where=url,
            lock_dir=lock_dir,
            leases=leases,
        )
        try:
            client.get_collections()
        except Exception as exc:
            client.close()
            err = translate_error(
                exc, url, f"cannot reach Qdrant at {url}: it answered 'not found' (is it a Qdrant server?)"
            )
            raise (StoreError(str(err)) if isinstance(err, CollectionNotFoundError) else err) from None
        if url != ":memory:":
            _warn_if_incompatible(client, url)
        return backend

    # naming ----------------------------------------------------------------------------------------
    def _alias(self, name: str) -> str:
        check_collection_name(name)  # the rule every backend applies
        if "__" in name:
            raise UserInputError(
                f"collection name {name!r} may hold only letters, digits, '-' and '_' (and no '__' on a server)"
            )
        return f"{self.prefix}_{name}"

    def _collection(self, name: str, version: str) -> str:
        return f"{self._alias(name)}__{check_version(version)}"

    def _call(self, fn: Callable[[QdrantClient], _T], missing: str = "collection not found") -> _T:
        try:
            return fn(self.client)
        except Exception as exc:
            raise translate_error(exc, self.where, missing) from None

    def _aliases(self) -> dict[str, str]:
        resp = self._call(lambda c: c.get_aliases())
        return {a.alias_name: a.collection_name for a in resp.aliases}

    def _version_of(self, alias: str, target: str) -> str | None:
        """The version an alias points at, or None when the alias is not one of ours."""
        head = f"{alias}__"
        if target.startswith(head) and VERSION_RE.match(target[len(head) :]):
            return target[len(head) :]
        return None

    # Backend ------------------------------------------------------------------------------------------
    def list_collections(self) -> list[str]:
        head = f"{self.prefix}_"
        return sorted(
            alias[len(head) :]
            for alias, target in self._aliases().items()
            if alias.startswith(head) and self._version_of(alias, target) is not None
        )

    def stored_names(self) -> list[str]:
        head = f"{self.prefix}_"
        resp = self._call(lambda c: c.get_collections())
        names = set(self.list_collections())
        for col in resp.collections:
            base, sep, version = col.name.rpartition("__")
            if (
                sep
                and base.startswith(head)
                and VERSION_RE.match(version)
                and _NAME_RE.match(base[len(head) :])
            ):
                names.add(base[len(head) :])
        return sorted(names)

    def live_version(self, name: str) -> str | None:
        alias = self._alias(name)
        target = self._aliases().get(alias)
        return None if target is None else self._version_of(alias, target)

    def versions(self, name: str) -> list[str]:
        alias = self._alias(name)
        resp = self._call(lambda c: c.get_collections())
        found = (self._version_of(alias, col.name) for col in resp.collections)
        return sorted(v for v in found if v is not None)

    def _store(self, name: str, version: str) -> ServerStore:
        return ServerStore(
            self.client,
            self._collection(name, version),
            name,
            version,
            where=self.where,
            shard_number=self.shard_number,
            replication_factor=self.replication_factor,
            write_consistency_factor=self.write_consistency_factor,
        )

    def open_version(self, name: str, version: str) -> Store:
        collection = self._collection(name, version)
        if not self._call(lambda c: c.collection_exists(collection)):
            raise CollectionNotFoundError(f"collection {name!r} has no version {version}")
        return self._store(name, version)

    def new_version(self, name: str) -> tuple[str, Store]:
        self._alias(name)
        with self.mutation(name):
            # The new version's Qdrant collection appears only at ``create``; a build begun here meanwhile is
            # seen through its lock, so the next creator numbers past it.
            building = self.locks.versions_building(name) if self.locks else []
            version = next_version(self.versions(name) + building)
            if self.locks:
                self.locks.begin_build(name, version)
        return version, self._store(name, version)

    def activate(self, name: str, version: str) -> None:
        from qdrant_client import models

        alias = self._alias(name)
        collection = self._collection(name, version)
        with self.mutation(name):
            if not self._call(lambda c: c.collection_exists(collection)):
                raise CollectionNotFoundError(f"collection {name!r} has no version {version}")
            ops: list[Any] = []
            if alias in self._aliases():
                # The server rejects deleting an alias that does not exist, so only a re-point deletes first.
                ops.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
            ops.append(
                models.CreateAliasOperation(
                    create_alias=models.CreateAlias(collection_name=collection, alias_name=alias)
                )
            )
            self._call(
                lambda c: c.update_collection_aliases(change_aliases_operations=ops),
                missing=f"collection {name!r} has no version {version}",
            )
            if self.locks:
                self.locks.end_build(name, version)

    @contextmanager
    def writer(self, name: str) -> Iterator[None]:
        """This machine's writer lock, then the server's writer lease (a writer elsewhere: "in use")."""
        with super().writer(name):
            if self.leases is None:
                yield
                return
            busy = (
                f"collection {name!r} is in use by a kret process on another machine (index, reindex or rm)"
            )
            with self.leases.held(_writer_key(name), busy):
                yield

    def drop_version(self, name: str, version: str) -> None:
        collection = self._collection(name, version)
        with self.mutation(name):
            if self.live_version(name) == version:
                raise UserInputError(
                    f"version {version} is the live version of {name!r}; drop the collection instead"
                )
            other = self.leases.held_elsewhere(_writer_key(name)) if self.leases else None
            if other is not None:  # it may be building this version (a reindex on another machine)
                raise IndexInUseError(
                    f"collection {name!r} is being written on another machine "
                    f"({describe_lease(other, time.time())}); its versions are left alone"
                )
            if self.locks:
                self.locks.refuse_if_built_elsewhere(name, version)
            self._call(lambda c: c.delete_collection(collection))
            if self.locks:
                self.locks.forget_build(name, version)

    def drop(self, name: str) -> None:
        from qdrant_client import models

        alias = self._alias(name)
        with self.writer(name), self.mutation(name):
            if self.locks:
                for version in self.versions(name):
                    self.locks.refuse_if_built_elsewhere(name, version)
            if alias in self._aliases():
                # Remove the alias first: a crash half-way leaves no collection that looks live.
                op = models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))
                self._call(lambda c: c.update_collection_aliases(change_aliases_operations=[op]))
            for version in self.versions(name):
                self.drop_version(name, version)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> ServerBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _writer_key(name: str) -> str:
    return f"writer:{name}"


__all__ = ["ServerBackend", "ServerStore"]
