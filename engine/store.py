"""The store contract: what the engine needs from Qdrant, whichever Qdrant it is.

Two implementations keep the same behaviour: ``edge_store`` (Qdrant Edge in-process, the default) and
``server_store`` (qdrant-client against a server or cluster). One contract test suite runs against both.

A *backend* manages named collections and their versions (a re-index with a new model builds a new version
and switches to it atomically); a *store* is one version of one collection.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal

from kret.engine.fusion import FusionInput, QdrantFusion, get_fusion
from kret.engine.locks import CollectionLocks
from kret.engine.names import check_collection_name
from kret.engine.types import BranchScore, SparseVec, StoredPoint
from kret.errors import UserInputError
from kret.indexer.document import KRET_NAMESPACE, doc_point_id

DENSE = "dense"
SPARSE = "lex"
PART_KIND = "part"  # a committed part of a large document not yet complete: never returned by search
PENDING_KIND = "pending"  # the marker of such a document
MANIFEST_ID = str(__import__("uuid").uuid5(KRET_NAMESPACE, "manifest"))

# Payload keys kret writes on every chunk; anything else a user filters on lives under ``meta.``.
CHUNK_KEYS = (
    "kind",
    "doc_id",
    "chunk_index",
    "text",
    "title",
    "heading",
    "path",
    "source_type",
    "doc_hash",
    "mtime",
)
# Keyword/integer payload indexes, created before the HNSW build (see docs/qdrant.md, gotcha 1).
KEYWORD_INDEXES = ("kind", "doc_id", "path", "source_type", "doc_hash")
INTEGER_INDEXES = ("chunk_index",)
# A collection version is ``v`` + at least four digits (``v0001``); both backends number them the same way.
VERSION_RE = re.compile(r"^v(\d{4,})$")


def check_version(version: object) -> str:
    """``version`` itself when it names a version (v0001, ...): the one check every backend applies before a
    version becomes part of a path, a lock file's name or a server collection name."""
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise UserInputError(f"{version!r} is not a collection version (v0001, v0002, ...)")
    return version


def next_version(existing: Sequence[str]) -> str:
    """The version after the highest of ``existing`` (names that are not versions are ignored)."""
    numbers = [int(m.group(1)) for v in existing if (m := VERSION_RE.match(v))]
    return f"v{(max(numbers) + 1 if numbers else 1):04d}"


@dataclass(frozen=True)
class Condition:
    """One exact-match condition on a payload key: ``value`` may be a list (match any)."""

    key: str
    value: Any


# The dense branch's HNSW beam width (Qdrant's ``hnsw_ef``; Qdrant searches with max(ef, limit)). Qdrant's own
# default is the index's build width, ef_construct = 100: on the 22k-chunk korquad-dev-hard collection that
# returned 96 % of exact search's top 10 and cost dense NDCG@10 0.012. 300 is the smallest width that returns
# >= 99 % of exact search's top 10 for 1,000 questions from another set (no relevance labels looked at);
# dense p50 1.9 -> 4.1 ms, hybrid 7.8 -> 12.4 ms there (bench/README.md §2e, bench/hnsw_ef.py). Collections
# below Qdrant's full-scan threshold (~6,600 chunks of 384 floats) are searched exactly anyway.
DEFAULT_HNSW_EF = 300


@dataclass
class QuerySpec:
    mode: Literal["dense", "sparse", "hybrid"]
    limit: int
    dense: list[float] | None = None
    sparse: SparseVec | None = None
    prefetch_k: int = 100
    fusion: str = "dbsf"  # a name in kret.engine.fusion's registry
    rrf_k: int = 60
    weights: tuple[float, float] = (1.0, 1.0)  # dense, sparse
    fusion_params: dict[str, float] = field(default_factory=dict)  # a client-side method's parameters
    conditions: list[Condition] = field(default_factory=list)
    exact: bool = False
    hnsw_ef: int | None = DEFAULT_HNSW_EF  # HNSW beam width of the dense search; None = the index's own (100)
    with_payload: bool = True


@dataclass
class RawHit:
    id: str
    score: float
    payload: dict[str, Any]
    branches: dict[str, BranchScore] = field(default_factory=dict)


@dataclass
class DocState:
    doc_id: str
    doc_hash: str
    path: str
    n_chunks: int
    lex_len: int = 0  # total Kiwi terms over its chunks: BM25's average length is rebuilt from these
    # A pending marker's resume point (``indexer.chunker.PartCursor``: the next part's first character and the
    # section heading in effect there; its first chunk index is ``n_chunks``). None on markers written before
    # parts were resumable: such a document starts over.
    next_char: int | None = None
    heading: str = ""

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> DocState:
        """A marker's state, tolerant of markers written before a field existed (missing -> its default)."""
        return cls(
            doc_id=payload["doc_id"],
            doc_hash=payload.get("doc_hash", ""),
            path=payload.get("path", ""),
            n_chunks=payload.get("n_chunks", 0),
            lex_len=payload.get("lex_len", 0),
            next_char=payload.get("next_char"),
            heading=payload.get("heading", ""),
        )


@dataclass
class DocumentWrite:
    """A document's complete new state: written with its marker in one operation."""

    doc_id: str
    doc_hash: str
    path: str
    points: list[StoredPoint]
    lex_len: int = 0


def marker_point(write: DocumentWrite) -> StoredPoint:
    payload = {
        "kind": "doc",
        "doc_id": write.doc_id,
        "doc_hash": write.doc_hash,
        "path": write.path,
        "n_chunks": len(write.points),
        "lex_len": write.lex_len,
    }
    return StoredPoint(id=doc_point_id(write.doc_id), dense=None, sparse=None, payload=payload)


def state_point(state: DocState, kind: str) -> StoredPoint:
    """A document's marker from its state: ``kind="doc"`` (complete) or ``kind="pending"`` (a large document
    being written in parts; ``n_chunks`` then counts the chunks committed so far). Both use the document
    marker's id, so the final marker simply overwrites the pending one."""
    payload = {
        "kind": kind,
        "doc_id": state.doc_id,
        "doc_hash": state.doc_hash,
        "path": state.path,
        "n_chunks": state.n_chunks,
        "lex_len": state.lex_len,
    }
    if kind == PENDING_KIND and state.next_char is not None:
        payload |= {"next_char": state.next_char, "heading": state.heading}
    return StoredPoint(id=doc_point_id(state.doc_id), dense=None, sparse=None, payload=payload)


def manifest_point(manifest: dict[str, Any]) -> StoredPoint:
    payload = {"kind": "manifest", "data": json.dumps(manifest, ensure_ascii=False, sort_keys=True)}
    return StoredPoint(id=MANIFEST_ID, dense=None, sparse=None, payload=payload)


def branch_plan(spec: QuerySpec) -> list[str]:
    """The branches a query runs: hybrid falls back to dense when the query has no lexical terms."""
    has_sparse = spec.sparse is not None and len(spec.sparse) > 0
    if spec.mode == "dense":
        return ["dense"]
    if spec.mode == "sparse":
        return ["sparse"] if has_sparse else []
    return ["dense", "sparse"] if has_sparse else ["dense"]


def attach_branches(fused: list[RawHit], branch_lists: dict[str, list[tuple[str, float]]]) -> list[RawHit]:
    """Give every fused hit each branch's own score and 1-based rank, where the branch found it."""
    lookup = {
        name: {pid: BranchScore(score=score, rank=i + 1) for i, (pid, score) in enumerate(hits)}
        for name, hits in branch_lists.items()
    }
    for hit in fused:
        for name, table in lookup.items():
            if hit.id in table:
                hit.branches[name] = table[hit.id]
    return fused


class Store(ABC):
    """One version of one collection."""

    name: str
    # True when ``create`` found this version already made by another process that kret's file locks do not
    # reach (a server shared with another machine): a failed build must not drop what is not its own.
    made_elsewhere: bool = False

    @abstractmethod
    def create(self, dimension: int, manifest: dict[str, Any]) -> None:
        """Create the empty collection with vectors, payload indexes and the manifest."""

    @abstractmethod
    def read_manifest(self) -> dict[str, Any]: ...

    @abstractmethod
    def write_manifest(self, manifest: dict[str, Any]) -> None: ...

    @abstractmethod
    def doc_states(self) -> dict[str, DocState]:
        """Every fully indexed document with its recorded hash."""

    @abstractmethod
    def write_documents(self, writes: Sequence[DocumentWrite]) -> None:
        """Replace these documents: old chunks deleted, new chunks and markers upserted in one operation."""

    @abstractmethod
    def delete_documents(self, doc_ids: Sequence[str]) -> None: ...

    # Large documents in parts (see engine/ingest.py): part points carry ``kind="part"``, which search
    # excludes; the pending marker records how far the document got, so a later run resumes there.
    def pending_documents(self) -> dict[str, DocState]:
        """Large documents partly written: ``n_chunks`` and ``lex_len`` count their committed parts."""
        raise NotImplementedError

    def write_part(self, state: DocState, points: Sequence[StoredPoint]) -> None:
        """Upsert one part's points (``kind="part"``) and then the pending marker ``state``."""
        raise NotImplementedError

    def commit_parts(self, state: DocState) -> None:
        """Turn the document's parts into live chunks, then write its final marker (``state``): the
        document becomes visible to search whole, and complete for the next run."""
        raise NotImplementedError

    def query(self, spec: QuerySpec) -> list[RawHit]:
        """One branch as Qdrant ranks it; hybrid fused inside Qdrant or, for a client-side method, here.

        Either way every branch's own list comes back from the same batch request, so each hit carries its
        per-branch scores and ranks (``attach_branches``). A client-side method costs one extra call: the
        payloads of the fused top ``limit``.
        """
        branches = branch_plan(spec)
        if not branches:
            return []
        if len(branches) == 1:
            lists, final = self._run_branches(spec, branches, None)
            return attach_branches(final, lists)
        method = get_fusion(spec.fusion)
        if method.in_qdrant:
            lists, final = self._run_branches(spec, branches, method.qdrant(spec.rrf_k, spec.weights))
            return attach_branches(final, lists)
        lists, _ = self._run_branches(spec, branches, None)
        fused = method.fuse(
            FusionInput(
                dense=lists["dense"],
                sparse=lists["sparse"],
                n_terms=len(spec.sparse) if spec.sparse is not None else 0,
                rrf_k=spec.rrf_k,
                weights=spec.weights,
                params=spec.fusion_params,
            )
        )[: spec.limit]
        payloads = self._payloads([pid for pid, _ in fused]) if spec.with_payload and fused else {}
        final = [RawHit(id=pid, score=score, payload=payloads.get(pid, {})) for pid, score in fused]
        return attach_branches(final, lists)

    @abstractmethod
    def _run_branches(
        self, spec: QuerySpec, branches: list[str], fusion: QdrantFusion | None
    ) -> tuple[dict[str, list[tuple[str, float]]], list[RawHit]]:
        """One batch request: each planned branch's ranked ``(id, score)`` list and the final hits.

        One branch: its top ``spec.limit`` with payloads is both the list and the final hits. Several: each
        branch's top ``spec.prefetch_k`` without payloads, plus — when ``fusion`` is given — Qdrant's fused
        top ``spec.limit`` with payloads as the final hits (else the final hits are empty: the caller fuses).
        """

    @abstractmethod
    def _payloads(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Payloads of these points by id (for the top hits of a client-side fusion)."""

    @abstractmethod
    def scroll_chunks(self, *, with_vectors: bool = False, batch: int = 512) -> Iterator[StoredPoint]: ...

    @abstractmethod
    def count_chunks(self) -> int: ...

    @abstractmethod
    def distinct_values(self, key: str, limit: int = 100_000) -> list[Any]:
        """Distinct values of an indexed payload key (for glob filters resolved inside Qdrant)."""

    @abstractmethod
    def has_key(self, key: str) -> bool:
        """Whether any chunk has this payload key (unknown filter keys are an error, not an empty result)."""

    @abstractmethod
    def finalize(self) -> None:
        """End of an ingest: build the ANN index where the backend needs it."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Backend(ABC):
    """Named collections and their versions on one kind of Qdrant."""

    kind: str

    @abstractmethod
    def list_collections(self) -> list[str]: ...

    @abstractmethod
    def live_version(self, name: str) -> str | None: ...

    @abstractmethod
    def versions(self, name: str) -> list[str]: ...

    @abstractmethod
    def open_version(self, name: str, version: str) -> Store: ...

    @abstractmethod
    def new_version(self, name: str) -> tuple[str, Store]:
        """A fresh, empty version (call ``create`` on the store), not yet live."""

    @abstractmethod
    def activate(self, name: str, version: str) -> None:
        """Make ``version`` the live one, atomically: searches see the old or the new, never a mix."""

    @abstractmethod
    def drop_version(self, name: str, version: str) -> None: ...

    def stored_names(self) -> list[str]:
        """Every name with a live version *or* only versions (a crash before the first switch leaves those):
        what gc and ``collections list`` must see."""
        return self.list_collections()

    # The lock protocol of ``engine.locks``; None: this backend's processes are not serialised (a bare
    # ServerBackend without a lock folder, e.g. in a test over local mode).
    locks: CollectionLocks | None = None

    @contextmanager
    def mutation(self, name: str) -> Iterator[None]:
        """Serialise create / switch / gc / drop of one collection between processes (``engine.locks``)."""
        with self.locks.mutation(check_collection_name(name)) if self.locks else nullcontext():
            yield

    @contextmanager
    def writer(self, name: str) -> Iterator[None]:
        """Exclusive right to write one collection (index, reindex, rm); a second writer gets "in use"."""
        with self.locks.writer(check_collection_name(name)) if self.locks else nullcontext():
            yield

    def is_building(self, name: str, version: str) -> bool:
        """Whether a live process is building this version (created, not yet switched to)."""
        return self.locks is not None and self.locks.is_building(
            check_collection_name(name), check_version(version)
        )

    def open_live(self, name: str) -> Store | None:
        version = self.live_version(name)
        return None if version is None else self.open_version(name, version)

    def drop(self, name: str) -> None:
        for version in self.versions(name):
            self.drop_version(name, version)
