"""One contract, every Qdrant: the same behaviour from Qdrant Edge, qdrant-client's local mode and a server.

The search layer and the indexer are written against ``Store``/``Backend`` only, so any difference between
backends is a bug that would show up as "works embedded, breaks on the cluster". Vectors are tiny, fixed
and hand-made: no model is needed, and every expected ranking can be worked out by hand.

The ``server`` backend runs only when ``KRET_QDRANT_URL`` points at a real Qdrant (it uses a unique
collection prefix per run and drops what it made).
"""

from __future__ import annotations

import http.server
import json
import math
import os
import random
import shutil
import socket
import tempfile
import threading
import uuid
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
from qdrant_client import QdrantClient

from kret import wiring
from kret.engine.edge_store import EdgeBackend
from kret.engine.fusion import FusionInput, get_fusion
from kret.engine.server_errors import translate_error
from kret.engine.server_store import ServerBackend, ServerStore
from kret.engine.store import Backend, Condition, DocumentWrite, QuerySpec, Store
from kret.engine.types import SparseVec, StoredPoint
from kret.errors import CollectionNotFoundError, IndexInUseError, StoreError, UserInputError
from kret.indexer.document import chunk_point_id
from kret.settings import load_settings

# Local mode is brute force anyway and says so when a query asks for exact search.
pytestmark = pytest.mark.filterwarnings("ignore:Local mode performs exact:UserWarning")

DIM = 8
NAME = "docs"
MANIFEST = {"model": {"name": "fake-8", "fingerprint": "abc"}, "dimension": DIM, "note": "한국어 매니페스트"}

# Read at import: the shared conftest clears KRET_* variables around every test.
SERVER_URL = os.environ.get("KRET_QDRANT_URL")
SERVER_SETTINGS = {
    field: os.environ.get(f"KRET_{field.upper()}")
    for field in (
        "qdrant_api_key",
        "qdrant_prefer_grpc",
        "qdrant_timeout",
        "shard_number",
        "replication_factor",
        "write_consistency_factor",
    )
}
BACKENDS = [
    "edge",
    "memory",
    pytest.param(
        "server",
        marks=[
            pytest.mark.server,
            pytest.mark.skipif(
                not SERVER_URL, reason="set KRET_QDRANT_URL to run the contract on a real Qdrant"
            ),
        ],
    ),
]


# fake data ---------------------------------------------------------------------------------------------
def dense(doc_id: str, index: int) -> list[float]:
    """A fixed unit vector per chunk: querying with it makes that chunk the exact dense top hit."""
    rng = random.Random(zlib.crc32(f"{doc_id}:{index}".encode()))
    v = [rng.gauss(0.0, 1.0) for _ in range(DIM)]
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


def sparse(terms: dict[int, float]) -> SparseVec:
    keys = sorted(terms)
    return SparseVec(keys, [terms[k] for k in keys])


def chunk(
    doc_id: str, index: int, terms: dict[int, float], path: str, source_type: str, meta: dict
) -> StoredPoint:
    payload = {
        "kind": "chunk",
        "doc_id": doc_id,
        "chunk_index": index,
        "text": f"{doc_id} 본문 {index}",
        "title": doc_id.upper(),
        "heading": "",
        "path": path,
        "source_type": source_type,
        "doc_hash": f"hash-{doc_id}",
        "mtime": 1.5,
        "meta": meta,
    }
    return StoredPoint(chunk_point_id(doc_id, index), dense(doc_id, index), sparse(terms), payload)


def document(
    doc_id: str,
    path: str,
    source_type: str,
    meta: dict,
    chunk_terms: list[dict[int, float]],
    doc_hash: str | None = None,
) -> DocumentWrite:
    points = [chunk(doc_id, i, t, path, source_type, meta) for i, t in enumerate(chunk_terms)]
    lex_len = int(sum(sum(t.values()) for t in chunk_terms))
    return DocumentWrite(doc_id, doc_hash or f"hash-{doc_id}", path, points, lex_len=lex_len)


# term ids: 1 and 2 in a0; 3 only in a1; 2 and 4 in b0; 5 only in c0
CORPUS = [
    document("a", "docs/a.txt", "txt", {"lang": "ko"}, [{1: 1.0, 2: 1.0}, {3: 1.0}]),
    document("b", "docs/b.md", "md", {"lang": "en"}, [{2: 1.0, 4: 1.0}]),
    document("c", "notes/c.txt", "txt", {"lang": "ko", "topic": "x"}, [{5: 2.0}]),
]
A0, A1, B0, C0 = (
    chunk_point_id("a", 0),
    chunk_point_id("a", 1),
    chunk_point_id("b", 0),
    chunk_point_id("c", 0),
)


# fixtures ----------------------------------------------------------------------------------------------
@contextmanager
def scratch_dir(fallback: Path) -> Iterator[Path]:
    """A directory for Edge shards, in RAM where the machine has /dev/shm.

    Edge fsyncs on every update; on a busy shared disk that made one shard cost 1-2 s, on tmpfs ~50 ms.
    """
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield fallback
        return
    path = Path(tempfile.mkdtemp(prefix="kret-contract-", dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def make_backend(kind: str, root: Path) -> Backend:
    if kind == "edge":
        return EdgeBackend(root / "collections")
    if kind == "memory":
        return ServerBackend(QdrantClient(":memory:"), prefix="t", lock_dir=root / "locks")
    return wiring.server_backend(
        load_settings(qdrant_url=SERVER_URL, home=root, **SERVER_SETTINGS),
        prefix=f"kret_t{uuid.uuid4().hex[:10]}",
    )


def peer_of(backend: Backend) -> Backend:
    """The same collections as another kret process on this machine sees them: its own backend object, the
    same store and the same lock files."""
    if isinstance(backend, EdgeBackend):
        return EdgeBackend(backend.root)
    assert isinstance(backend, ServerBackend) and backend.locks is not None
    return ServerBackend(backend.client, prefix=backend.prefix, lock_dir=backend.locks.folder)


def dispose(backend: Backend) -> None:
    if isinstance(backend, ServerBackend):
        for name in (NAME, "other"):
            backend.drop(name)
        backend.close()


@pytest.fixture
def edge_root(tmp_path: Path) -> Iterator[Path]:
    with scratch_dir(tmp_path) as root:
        yield root


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, edge_root: Path) -> Iterator[Backend]:
    """A fresh, empty backend for tests that write."""
    b = make_backend(request.param, edge_root)
    try:
        yield b
    finally:
        dispose(b)


def new_live(
    backend: Backend, name: str = NAME, writes: list[DocumentWrite] | None = None
) -> tuple[str, Store]:
    version, store = backend.new_version(name)
    store.create(DIM, MANIFEST)
    if writes:
        store.write_documents(writes)
    store.finalize()
    backend.activate(name, version)
    return version, store


@pytest.fixture
def store(backend: Backend) -> Iterator[Store]:
    """A fresh store holding CORPUS, for tests that change it."""
    _, s = new_live(backend, writes=CORPUS)
    yield s
    s.close()


@dataclass
class Loaded:
    kind: str
    backend: Backend
    version: str
    store: Store


class LoadedCache:
    """CORPUS loaded once per backend, built on first use and shared by the read-only tests."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.items: dict[str, Loaded] = {}

    def get(self, kind: str) -> Loaded:
        if kind not in self.items:
            backend = make_backend(kind, self.root / kind)
            version, s = new_live(backend, writes=CORPUS)
            self.items[kind] = Loaded(kind, backend, version, s)
        return self.items[kind]

    def close(self) -> None:
        for item in self.items.values():
            item.store.close()
            dispose(item.backend)


@pytest.fixture(scope="module")
def loaded_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoadedCache]:
    with scratch_dir(tmp_path_factory.mktemp("ro")) as root:
        cache = LoadedCache(root)
        yield cache
        cache.close()


@pytest.fixture(params=BACKENDS)
def ro(request: pytest.FixtureRequest, loaded_cache: LoadedCache) -> Store:
    """The shared CORPUS store: tests using it must not write."""
    return loaded_cache.get(request.param).store


@pytest.fixture
def server_backend() -> Iterator[ServerBackend]:
    b = ServerBackend(QdrantClient(":memory:"), prefix="t")
    yield b
    b.close()


def ids(hits) -> list[str]:
    return [h.id for h in hits]


def spec(**kw) -> QuerySpec:
    kw.setdefault("limit", 10)
    return QuerySpec(**kw)


# collection and documents ------------------------------------------------------------------------------
def test_a_document_in_parts_is_invisible_until_committed_and_keeps_its_cursor(store: Store) -> None:
    """engine/ingest.py's large-document protocol on every backend: parts with a pending marker that carries
    the resume cursor, invisible to search and counts; one commit turns them into chunks."""
    from dataclasses import replace

    from kret.engine.store import PART_KIND, DocState

    def part(index: int) -> StoredPoint:
        p = chunk("big", index, {7: 1.0}, "big.txt", "txt", {})
        return replace(p, payload={**p.payload, "kind": PART_KIND, "doc_hash": "hash-big"})

    state = DocState("big", "hash-big", "big.txt", 2, 2, next_char=1234, heading="둘째 절")
    store.write_part(state, [part(0), part(1)])
    assert store.pending_documents()["big"] == state
    assert "big" not in store.doc_states() and store.count_chunks() == 4
    live = [Condition("kind", "chunk")]  # what engine/search.py adds to every query
    assert ids(store.query(spec(mode="sparse", sparse=sparse({7: 1.0}), conditions=live))) == []

    store.commit_parts(replace(state, n_chunks=2))
    assert store.pending_documents() == {}
    done = store.doc_states()["big"]
    assert (done.n_chunks, done.lex_len, done.next_char) == (2, 2, None)  # a complete document has no cursor
    assert store.count_chunks() == 6
    assert len(ids(store.query(spec(mode="sparse", sparse=sparse({7: 1.0}), conditions=live)))) == 2


def test_manifest_round_trip(backend: Backend) -> None:
    version, s = backend.new_version(NAME)
    assert version == "v0001"
    s.create(DIM, MANIFEST)
    try:
        assert s.read_manifest() == MANIFEST
        assert s.count_chunks() == 0 and s.doc_states() == {}
        s.write_manifest({**MANIFEST, "corpus": {"n_docs": 3}})
        assert s.read_manifest()["corpus"] == {"n_docs": 3}
        assert s.count_chunks() == 0  # the manifest is not a chunk
    finally:
        s.close()
    with pytest.raises(StoreError):
        s.count_chunks()  # a closed store refuses instead of touching a handle it gave up


def test_write_records_markers_and_replaces_chunks(store: Store) -> None:
    states = store.doc_states()
    assert set(states) == {"a", "b", "c"}
    a = states["a"]
    assert (a.doc_hash, a.path, a.n_chunks, a.lex_len) == ("hash-a", "docs/a.txt", 2, 3)
    assert store.count_chunks() == 4

    store.write_documents([document("a", "docs/a2.txt", "txt", {"lang": "ko"}, [{9: 1.0}], doc_hash="new")])
    assert store.count_chunks() == 3
    chunk_ids = {p.id for p in store.scroll_chunks()}
    assert A1 not in chunk_ids and A0 in chunk_ids
    state = store.doc_states()["a"]
    assert (state.doc_hash, state.path, state.n_chunks, state.lex_len) == ("new", "docs/a2.txt", 1, 1)
    assert ids(store.query(spec(mode="sparse", sparse=sparse({3: 1.0})))) == []  # a1's term went with it

    store.write_documents([])  # nothing to do, no error
    assert store.count_chunks() == 3


def test_write_many_chunks_in_one_call(backend: Backend) -> None:
    big = document("big", "big.txt", "txt", {}, [{i % 7: 1.0} for i in range(300)])
    _, s = new_live(backend, writes=[big])
    try:
        assert s.count_chunks() == 300
        assert s.doc_states()["big"].n_chunks == 300
        s.write_documents([document("big", "big.txt", "txt", {}, [{1: 1.0}])])
        assert s.count_chunks() == 1
    finally:
        s.close()


def test_delete_documents(store: Store) -> None:
    store.delete_documents(["b"])
    assert set(store.doc_states()) == {"a", "c"}
    assert store.count_chunks() == 3
    assert B0 not in ids(store.query(spec(mode="dense", dense=dense("b", 0))))
    assert sorted(store.distinct_values("doc_id")) == ["a", "c"]
    store.delete_documents([])
    store.delete_documents(["no-such-doc"])
    assert store.count_chunks() == 3


# queries -----------------------------------------------------------------------------------------------
def test_dense_query(ro: Store) -> None:
    hits = ro.query(spec(mode="dense", dense=dense("a", 1)))
    assert ids(hits)[0] == A1
    assert sorted(ids(hits)) == sorted([A0, A1, B0, C0])  # markers and the manifest are never hits
    assert all(h.payload["kind"] == "chunk" for h in hits)
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert [h.branches["dense"].rank for h in hits] == [1, 2, 3, 4]
    assert set(hits[0].branches) == {"dense"}
    assert ro.query(spec(mode="dense", dense=dense("a", 1), limit=2, exact=True))[0].id == A1
    assert ids(ro.query(spec(mode="dense", dense=dense("a", 1), hnsw_ef=256))) == ids(hits)
    hybrid = spec(mode="hybrid", dense=dense("b", 0), sparse=sparse({4: 1.0}), hnsw_ef=256)
    assert ro.query(hybrid)[0].id == B0  # the beam width reaches the hybrid's dense prefetch too


def test_default_search_warns_nothing(ro: Store) -> None:
    """The default HNSW width is sent with every dense search; qdrant-client's local mode (where it means
    nothing) used to warn on every query because of it."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ro.query(spec(mode="dense", dense=dense("a", 1)))
        ro.query(spec(mode="hybrid", dense=dense("b", 0), sparse=sparse({4: 1.0})))


def test_sparse_query(ro: Store) -> None:
    hits = ro.query(spec(mode="sparse", sparse=sparse({3: 1.0})))
    assert ids(hits) == [A1]
    assert hits[0].branches["sparse"].rank == 1 and hits[0].score > 0
    assert set(ids(ro.query(spec(mode="sparse", sparse=sparse({2: 1.0}))))) == {A0, B0}
    assert ro.query(spec(mode="sparse", sparse=SparseVec([], []))) == []
    assert ro.query(spec(mode="sparse", sparse=None)) == []


@pytest.mark.parametrize("fusion", ["rrf", "dbsf"])
def test_hybrid_query(ro: Store, fusion: str) -> None:
    hits = ro.query(spec(mode="hybrid", dense=dense("b", 0), sparse=sparse({4: 1.0}), fusion=fusion))
    assert hits[0].id == B0
    assert set(hits[0].branches) == {"dense", "sparse"}
    assert hits[0].branches["dense"].rank == 1 and hits[0].branches["sparse"].rank == 1
    assert hits[0].branches["dense"].score == pytest.approx(1.0, abs=1e-5)
    # Only b0 has term 4: everything else came from the dense branch alone.
    assert all(set(h.branches) == {"dense"} for h in hits[1:])
    assert sorted(h.branches["dense"].rank for h in hits) == [1, 2, 3, 4]
    assert hits[0].payload["doc_id"] == "b"


def test_rrf_and_dbsf_score_differently(ro: Store) -> None:
    base = {"mode": "hybrid", "dense": dense("a", 0), "sparse": sparse({2: 1.0})}
    rrf = ro.query(spec(**base, fusion="rrf"))
    dbsf = ro.query(spec(**base, fusion="dbsf"))
    assert rrf[0].id == dbsf[0].id == A0
    assert rrf[0].score <= 2 / 60 + 1e-6  # rank-based: at most 1/(k + 0) per branch with k=60
    assert dbsf[0].score > 2 / 60


@pytest.mark.parametrize("fusion", ["rrf", "dbsf"])
@pytest.mark.parametrize("weights", [(1.0, 1.0), (0.5, 3.0)])
def test_replay_of_qdrant_fusion_matches_qdrant(ro: Store, fusion: str, weights: tuple[float, float]) -> None:
    """The registry's client-side ``fuse`` of an in-Qdrant method is what the fusion study and ``kret tune``
    score: it must give Qdrant's own fused scores from the branch lists Qdrant returned."""
    if fusion == "dbsf" and weights != (1.0, 1.0):
        pytest.skip("Qdrant's DBSF takes no weights")
    base = {"mode": "hybrid", "dense": dense("a", 1), "sparse": sparse({1: 1.0, 2: 1.0, 4: 2.0})}
    hits = ro.query(spec(**base, fusion=fusion, weights=weights, rrf_k=5))
    lists = {
        b: sorted(
            ((h.id, h.branches[b].score, h.branches[b].rank) for h in hits if b in h.branches),
            key=lambda x: x[2],
        )
        for b in ("dense", "sparse")
    }
    inp = FusionInput(
        dense=[(i, s) for i, s, _ in lists["dense"]],
        sparse=[(i, s) for i, s, _ in lists["sparse"]],
        rrf_k=5,
        weights=weights,
    )
    replay = dict(get_fusion(fusion).fuse(inp))
    assert {h.id: h.score for h in hits} == pytest.approx(replay, rel=1e-4, abs=1e-6)


def test_client_side_fusion_returns_payloads_and_branches(ro: Store) -> None:
    base = {"mode": "hybrid", "dense": dense("b", 0), "sparse": sparse({4: 1.0})}
    qdrant = ro.query(spec(**base, fusion="dbsf"))
    client = ro.query(spec(**base, fusion="adaptive"))  # all parameters 0: DBSF, computed here
    assert ids(client) == ids(qdrant)
    assert [h.score for h in client] == pytest.approx([h.score for h in qdrant], rel=1e-4)
    assert client[0].payload["doc_id"] == "b"
    assert client[0].branches == qdrant[0].branches
    assert len(ro.query(spec(**base, fusion="adaptive", limit=2))) == 2
    bare = ro.query(spec(**base, fusion="adaptive", with_payload=False))
    assert bare and all(h.payload == {} for h in bare)
    # a large sparse weight puts the only sparse match first, a small one leaves dense's order
    tilt = {"mode": "hybrid", "dense": dense("a", 0), "sparse": sparse({5: 1.0}), "fusion": "adaptive"}
    assert ids(ro.query(spec(**tilt, fusion_params={"bias": 5.0})))[0] == C0
    assert ids(ro.query(spec(**tilt, fusion_params={"bias": -5.0})))[0] == A0


def test_hybrid_without_terms_falls_back_to_dense(ro: Store) -> None:
    dense_hits = ro.query(spec(mode="dense", dense=dense("c", 0)))
    for empty in (None, SparseVec([], [])):
        hits = ro.query(spec(mode="hybrid", dense=dense("c", 0), sparse=empty))
        assert ids(hits) == ids(dense_hits)
        assert [h.score for h in hits] == pytest.approx([h.score for h in dense_hits])
        assert all(set(h.branches) == {"dense"} for h in hits)


def test_weights_change_the_order(ro: Store) -> None:
    # prefetch_k=1: the dense branch offers only b0, the sparse branch only a1; with equal weights they
    # tie, and each weighting must put its own branch's candidate first.
    base = {
        "mode": "hybrid",
        "dense": dense("b", 0),
        "sparse": sparse({3: 1.0}),
        "prefetch_k": 1,
        "fusion": "rrf",
    }
    dense_first = ro.query(spec(**base, weights=(2.0, 1.0)))
    sparse_first = ro.query(spec(**base, weights=(1.0, 2.0)))
    assert ids(dense_first) == [B0, A1]
    assert ids(sparse_first) == [A1, B0]
    assert dense_first[0].score > dense_first[1].score


def test_rrf_k_is_applied(ro: Store) -> None:
    base = {"mode": "hybrid", "dense": dense("b", 0), "sparse": sparse({4: 1.0}), "fusion": "rrf"}
    top_k60 = ro.query(spec(**base, rrf_k=60))[0]
    top_k1 = ro.query(spec(**base, rrf_k=1))[0]
    # Qdrant's RRF: 1 / (k + 0-based position), summed over branches; b0 is first in both.
    assert top_k60.score == pytest.approx(2 / 60, rel=1e-4)
    assert top_k1.score == pytest.approx(2 / 1, rel=1e-4)


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
def test_filters_restrict_results(ro: Store, mode: str) -> None:
    base = {"mode": mode, "dense": dense("a", 0), "sparse": sparse({1: 1.0, 2: 1.0, 4: 1.0, 5: 1.0})}

    def docs(*conditions: Condition) -> set[str]:
        return {h.payload["doc_id"] for h in ro.query(spec(**base, conditions=list(conditions)))}

    assert docs() == {"a", "b", "c"}
    assert docs(Condition("doc_id", "b")) == {"b"}
    assert docs(Condition("path", "notes/c.txt")) == {"c"}
    assert docs(Condition("meta.lang", "ko")) == {"a", "c"}
    assert docs(Condition("meta.lang", "en")) == {"b"}
    assert docs(Condition("doc_id", ["a", "c"])) == {"a", "c"}
    assert docs(Condition("source_type", ["md"])) == {"b"}
    assert docs(Condition("doc_id", [])) == set()
    assert docs(Condition("meta.lang", "ko"), Condition("source_type", "txt"), Condition("doc_id", "c")) == {
        "c"
    }
    assert docs(Condition("meta.lang", "fr")) == set()


def test_filter_on_integer_key(ro: Store) -> None:
    hits = ro.query(spec(mode="dense", dense=dense("a", 0), conditions=[Condition("chunk_index", 1)]))
    assert ids(hits) == [A1]


def test_without_payload(ro: Store) -> None:
    for mode in ("dense", "hybrid"):
        hits = ro.query(spec(mode=mode, dense=dense("a", 0), sparse=sparse({1: 1.0}), with_payload=False))
        assert hits and all(h.payload == {} for h in hits)


# payload helpers ---------------------------------------------------------------------------------------
def test_has_key(ro: Store) -> None:
    assert ro.has_key("meta.topic")
    assert ro.has_key("meta.lang")
    assert ro.has_key("title")
    assert not ro.has_key("meta.nope")
    assert not ro.has_key("n_chunks")  # a marker key: markers are not chunks


def test_distinct_values(ro: Store) -> None:
    assert sorted(ro.distinct_values("path")) == ["docs/a.txt", "docs/b.md", "notes/c.txt"]
    assert sorted(ro.distinct_values("source_type")) == ["md", "txt"]
    assert sorted(ro.distinct_values("doc_id")) == ["a", "b", "c"]  # chunks only, not the manifest


def test_scroll_chunks_returns_what_was_written(ro: Store) -> None:
    written = {p.id: p for w in CORPUS for p in w.points}
    got = {p.id: p for p in ro.scroll_chunks(with_vectors=True, batch=2)}
    assert set(got) == set(written)
    for pid, point in got.items():
        assert point.payload == written[pid].payload
        assert point.dense == pytest.approx(written[pid].dense, abs=1e-5)
        assert point.sparse is not None
        assert list(point.sparse.indices) == list(written[pid].sparse.indices)
        assert list(point.sparse.values) == pytest.approx(list(written[pid].sparse.values))
    plain = list(ro.scroll_chunks())
    assert len(plain) == 4 and all(p.dense is None and p.sparse is None for p in plain)


def test_idf_modifier_is_live(store: Store) -> None:
    before = store.query(spec(mode="sparse", sparse=sparse({3: 1.0})))[0]
    assert before.id == A1
    store.write_documents(
        [document(f"more{i}", f"more{i}.txt", "txt", {}, [{3: 1.0, 7: 1.0}]) for i in range(3)]
    )
    after = {h.id: h.score for h in store.query(spec(mode="sparse", sparse=sparse({3: 1.0})))}
    assert after[A1] < before.score  # the term got commoner, so it counts for less


# versions ----------------------------------------------------------------------------------------------
def test_versions_and_atomic_activate(backend: Backend) -> None:
    assert backend.list_collections() == [] and backend.open_live(NAME) is None
    v1, old = new_live(backend, writes=CORPUS)
    assert (v1, backend.live_version(NAME), backend.list_collections()) == ("v0001", "v0001", [NAME])

    v2, new = backend.new_version(NAME)
    assert v2 == "v0002"
    new.create(DIM, {**MANIFEST, "model": {"name": "fake-8b"}})
    new.write_documents([document("d", "d.txt", "txt", {}, [{1: 1.0}])])
    assert backend.live_version(NAME) == "v0001"  # built but not live yet
    assert backend.versions(NAME) == ["v0001", "v0002"]
    new.close()

    backend.activate(NAME, v2)
    assert backend.live_version(NAME) == "v0002" and backend.list_collections() == [NAME]
    live = backend.open_live(NAME)
    assert live is not None
    try:
        assert live.read_manifest()["model"] == {"name": "fake-8b"}
        assert set(live.doc_states()) == {"d"}
        assert old.count_chunks() == 4  # a reader of the old version keeps it until it is dropped
    finally:
        live.close()
        old.close()

    reopened = backend.open_version(NAME, v1)
    assert reopened.count_chunks() == 4
    reopened.close()
    with pytest.raises(UserInputError, match="live version"):
        backend.drop_version(NAME, v2)
    backend.drop_version(NAME, v1)
    assert backend.versions(NAME) == ["v0002"]
    with pytest.raises(CollectionNotFoundError):
        backend.open_version(NAME, v1)

    backend.drop(NAME)
    assert backend.list_collections() == [] and backend.versions(NAME) == []
    assert backend.live_version(NAME) is None and backend.open_live(NAME) is None
    backend.drop(NAME)  # dropping what is gone is not an error


def test_collections_are_independent(backend: Backend) -> None:
    _, a = new_live(backend, writes=CORPUS)
    _, b = new_live(backend, "other", writes=[document("z", "z.txt", "txt", {}, [{1: 1.0}])])
    try:
        assert backend.list_collections() == [NAME, "other"]
        assert a.count_chunks() == 4 and b.count_chunks() == 1
    finally:
        a.close()
        b.close()
    backend.drop("other")
    assert backend.list_collections() == [NAME]


@pytest.mark.parametrize("bad", ["../x", "/abs/dir", "a/b", "..", ".", "", "-x", "a b", "a\0b", "x" * 200])
def test_names_are_checked_where_they_become_paths(backend: Backend, bad: str) -> None:
    """Issue 13: the backend is the one place a name becomes a path or a server collection name."""
    from kret.errors import CollectionNameError

    for call in (
        lambda: backend.new_version(bad),
        lambda: backend.live_version(bad),
        lambda: backend.versions(bad),
        lambda: backend.open_version(bad, "v0001"),
        lambda: backend.activate(bad, "v0001"),
        lambda: backend.drop_version(bad, "v0001"),
        lambda: backend.drop(bad),
    ):
        with pytest.raises(CollectionNameError):
            call()


def test_versions_must_look_like_versions(backend: Backend) -> None:
    new_live(backend)[1].close()
    for bad in ("../v0001", "v1", "/tmp", "..", "v0001/.."):
        with pytest.raises(UserInputError):
            backend.open_version(NAME, bad)
        with pytest.raises(UserInputError):
            backend.drop_version(NAME, bad)


def test_stored_names_include_versions_without_a_live_one(backend: Backend) -> None:
    _, store = backend.new_version(NAME)
    store.create(DIM, MANIFEST)
    store.close()
    assert backend.list_collections() == [] and backend.stored_names() == [NAME]
    assert backend.versions(NAME) == ["v0001"]


# the lock protocol between processes (engine.locks), on every backend ----------------------------------
def test_a_second_writer_is_refused(backend: Backend) -> None:
    peer = peer_of(backend)
    with (
        backend.writer(NAME),
        pytest.raises(IndexInUseError, match="in use by another kret process"),
        peer.writer(NAME),
    ):
        pass
    with peer.writer(NAME):  # free again once the first is done
        pass


def test_a_version_being_built_is_seen_and_kept_by_another_process(backend: Backend) -> None:
    """Issue 13: gc (or rm) in one process must not delete the version a reindex in another is building."""
    new_live(backend, writes=CORPUS)[1].close()
    peer = peer_of(backend)
    v2, building = backend.new_version(NAME)
    building.create(DIM, MANIFEST)
    assert peer.is_building(NAME, v2) and backend.is_building(NAME, v2)
    with pytest.raises(IndexInUseError, match="being built"):
        peer.drop_version(NAME, v2)
    with pytest.raises(IndexInUseError, match="being built"):
        peer.drop(NAME)
    assert backend.versions(NAME) == ["v0001", v2] and backend.live_version(NAME) == "v0001"
    building.close()
    backend.activate(NAME, v2)
    assert not peer.is_building(NAME, v2) and peer.live_version(NAME) == v2
    peer.drop_version(NAME, "v0001")  # an old version nobody builds goes
    assert backend.versions(NAME) == [v2]


def test_a_second_creator_numbers_past_a_build_in_progress(backend: Backend) -> None:
    """Two processes creating versions of one collection get different versions, also on a server, where a
    version's Qdrant collection appears only when the builder calls ``create``."""
    peer = peer_of(backend)
    v1, first = backend.new_version(NAME)
    v2, second = peer.new_version(NAME)
    assert (v1, v2) == ("v0001", "v0002")
    for store in (first, second):
        store.create(DIM, MANIFEST)
        store.close()
    peer.drop_version(NAME, v2)  # each builder may drop its own build
    backend.drop_version(NAME, v1)
    assert backend.versions(NAME) == []


def test_a_dead_builds_version_is_an_orphan_gc_may_remove(backend: Backend) -> None:
    """A builder that is gone (its process died: the kernel dropped its lock) leaves a version nobody builds."""
    new_live(backend, writes=CORPUS)[1].close()
    dead = peer_of(backend)
    v2, store = dead.new_version(NAME)
    store.create(DIM, MANIFEST)
    store.close()
    assert dead.locks is not None
    dead.locks._building.pop((NAME, v2)).release()  # what the kernel does when that process dies
    assert not backend.is_building(NAME, v2)
    backend.drop_version(NAME, v2)
    assert backend.versions(NAME) == ["v0001"]


# edge only ---------------------------------------------------------------------------------------------
def test_edge_second_open_is_in_use(loaded_cache: LoadedCache) -> None:
    item = loaded_cache.get("edge")  # holds its version open
    with pytest.raises(IndexInUseError):
        item.backend.open_version(NAME, item.version)


def test_edge_and_local_mode_agree(loaded_cache: LoadedCache) -> None:
    """Same data, same queries: ranks and scores match between Qdrant Edge and qdrant-client's local mode."""
    edge = loaded_cache.get("edge").store
    memory = loaded_cache.get("memory").store
    queries = [
        spec(mode="dense", dense=dense("c", 0)),
        spec(mode="sparse", sparse=sparse({1: 1.0, 2: 0.3, 5: 0.5})),  # no ties: tie order may differ
        spec(mode="hybrid", dense=dense("a", 1), sparse=sparse({1: 1.0, 4: 2.0}), rrf_k=10),
        spec(mode="hybrid", dense=dense("a", 1), sparse=sparse({1: 1.0, 4: 2.0}), fusion="dbsf"),
        spec(mode="hybrid", dense=dense("b", 0), sparse=sparse({3: 1.0}), weights=(0.5, 3.0)),
    ]
    for q in queries:
        e, m = edge.query(q), memory.query(q)
        assert [h.score for h in e] == pytest.approx([h.score for h in m], rel=1e-4), q
        assert {h.id for h in e} == {h.id for h in m}, q
        for he in e:
            hm = next(h for h in m if h.id == he.id)
            assert {k: v.rank for k, v in he.branches.items()} == {
                k: v.rank for k, v in hm.branches.items()
            }, q


# server only -------------------------------------------------------------------------------------------
def test_server_layout_is_alias_over_versioned_collections(server_backend: ServerBackend) -> None:
    client = server_backend.client
    _, s1 = new_live(server_backend)
    s1.close()
    v2, s2 = server_backend.new_version(NAME)
    s2.create(DIM, MANIFEST)
    s2.close()

    calls = []
    real = client.update_collection_aliases

    def spy(change_aliases_operations, **kw):
        calls.append([type(op).__name__ for op in change_aliases_operations])
        return real(change_aliases_operations=change_aliases_operations, **kw)

    client.update_collection_aliases = spy  # type: ignore[method-assign]
    server_backend.activate(NAME, v2)
    assert calls == [["DeleteAliasOperation", "CreateAliasOperation"]]  # one call: atomic switch
    aliases = {a.alias_name: a.collection_name for a in client.get_aliases().aliases}
    assert aliases == {"t_docs": "t_docs__v0002"}
    assert {c.name for c in client.get_collections().collections} == {"t_docs__v0001", "t_docs__v0002"}


def test_server_collection_config(server_backend: ServerBackend) -> None:
    from qdrant_client import models

    _, s = new_live(server_backend)
    s.close()
    info = server_backend.client.get_collection("t_docs__v0001")
    assert info.config.params.vectors["dense"].size == DIM
    assert info.config.params.vectors["dense"].distance == models.Distance.COSINE
    assert info.config.params.sparse_vectors["lex"].modifier == models.Modifier.IDF


def test_server_dropped_version_is_not_found(server_backend: ServerBackend) -> None:
    version, s = new_live(server_backend, writes=CORPUS)
    _, s2 = new_live(server_backend, writes=CORPUS)  # v0002 becomes live, v0001 can go
    s2.close()
    server_backend.drop_version(NAME, version)
    with pytest.raises(CollectionNotFoundError, match="v0001"):
        s.count_chunks()
    with pytest.raises(CollectionNotFoundError):
        server_backend.activate(NAME, version)
    with pytest.raises(CollectionNotFoundError):
        server_backend.open_version(NAME, "v0007")


def test_server_rejects_ambiguous_names(server_backend: ServerBackend) -> None:
    with pytest.raises(UserInputError):
        server_backend.new_version("a__v0001")
    with pytest.raises(UserInputError):
        ServerBackend(server_backend.client, prefix="bad prefix")


def test_server_store_refuses_to_recreate(server_backend: ServerBackend) -> None:
    _, s = new_live(server_backend)
    with pytest.raises(IndexInUseError, match="already exists"):
        s.create(DIM, MANIFEST)


def test_two_machines_creating_one_version_never_drop_each_others(tmp_path: Path) -> None:
    """File locks do not reach another machine: two creators of a server collection can both pick v0001.
    The server's create-if-absent decides; the loser gets "in use" and its clean-up must not drop the
    winner's version (it did: a failed build always dropped "its" version)."""
    from kret.api import _discard

    client = QdrantClient(":memory:")
    here = ServerBackend(client, prefix="t", lock_dir=tmp_path / "machine-a")
    there = ServerBackend(client, prefix="t", lock_dir=tmp_path / "machine-b")
    va, a = here.new_version(NAME)
    vb, b = there.new_version(NAME)
    assert va == vb == "v0001"
    a.create(DIM, MANIFEST)
    a.write_documents(CORPUS)
    with pytest.raises(IndexInUseError, match="already exists"):
        b.create(DIM, MANIFEST)
    _discard(there, NAME, vb, b)
    assert not there.is_building(NAME, vb) and here.is_building(NAME, va)
    here.activate(NAME, va)
    live = here.open_live(NAME)
    assert live is not None and live.count_chunks() == 4
    live.close()
    client.close()


def two_machines(tmp_path: Path, **lease_kw) -> tuple[ServerBackend, ServerBackend]:
    """Two machines sharing one server: separate lock folders (flock reaches neither), leases on."""
    client = QdrantClient(":memory:")
    machines = []
    for m in ("a", "b"):
        b = ServerBackend(client, prefix="t", lock_dir=tmp_path / f"machine-{m}", leases=True)
        assert b.leases is not None
        b.leases.owner = f"host-{m}:{100 if m == 'a' else 200}:x"
        for k, v in lease_kw.items():
            setattr(b.leases, k, v)
        machines.append(b)
    return machines[0], machines[1]


def test_a_writer_on_another_machine_is_refused_by_the_server_lease(tmp_path: Path) -> None:
    """flock does not reach another machine; the lease on the server does: a second machine's writer gets
    "in use" naming the holder, and gets the collection once the first is done."""
    here, there = two_machines(tmp_path)
    with here.writer(NAME):
        busy = r"another machine .*\(held by host-a pid 100, expires in \d+ s\)"
        with pytest.raises(IndexInUseError, match=busy), there.writer(NAME):
            pass
        with there.writer("other"):  # another collection is free
            pass
    with there.writer(NAME):
        pass
    assert "t-leases" not in here.stored_names() and here.list_collections() == []


def test_gc_on_another_machine_leaves_a_version_being_built_alone(tmp_path: Path) -> None:
    """The gap docs/deployment.md used to list: gc on machine B deleted the version a reindex on machine A
    was still building. While A holds the collection's writer lease, B drops none of its versions."""
    here, there = two_machines(tmp_path)
    _, live = new_live(here, writes=CORPUS)
    live.close()
    with here.writer(NAME):  # a reindex on machine A
        version, building = here.new_version(NAME)
        building.create(DIM, MANIFEST)
        with pytest.raises(IndexInUseError, match="being written on another machine"):
            there.drop_version(NAME, version)
        assert version in there.versions(NAME)
    there.drop_version(NAME, version)  # A is done (here: it gave up): now an orphan gc may remove
    assert version not in there.versions(NAME)


def test_a_crashed_writers_lease_expires_and_a_late_renewal_is_reported() -> None:
    """A holder that stops renewing (kill -9) blocks the collection for one time to live, not forever; a
    holder whose lease was taken over learns it at its next renewal and its run ends with an error."""
    from kret.engine.server_lease import ServerLeases

    client = QdrantClient(":memory:")
    now = [1000.0]
    a = ServerLeases(client, "leases", ttl_s=60, owner="host-a:1:x", clock=lambda: now[0])
    b = ServerLeases(client, "leases", ttl_s=60, owner="host-b:2:y", clock=lambda: now[0])
    assert a.acquire("k") is None
    assert b.acquire("k")["owner"] == "host-a:1:x"
    now[0] += 59
    assert a.renew("k")  # renewed in time: another 60 s
    now[0] += 61
    assert b.acquire("k") is None  # a stopped renewing: expired, taken over
    assert (
        not a.renew("k") and b.held_elsewhere("k") is None and a.held_elsewhere("k")["owner"] == "host-b:2:y"
    )
    a.release("k")  # not a's any more: nothing happens
    assert a.holder("k")["owner"] == "host-b:2:y"
    b.release("k")
    assert a.holder("k") is None


def test_a_lease_lost_during_a_run_fails_the_run(tmp_path: Path) -> None:
    import time

    here, there = two_machines(tmp_path, ttl_s=0.3)
    assert here.leases is not None and there.leases is not None
    lost = r"expired during this run and another owner took it \(held by host-b"
    with pytest.raises(IndexInUseError, match=lost), here.writer(NAME):
        there.leases.clock = lambda: time.time() + 10  # b sees a's lease as expired, and takes it
        assert there.leases.acquire(f"writer:{NAME}") is None
        time.sleep(0.5)  # a's renewal thread finds it gone


def test_connect_memory() -> None:
    backend = ServerBackend.connect(":memory:")
    try:
        assert backend.kind == "server" and backend.list_collections() == []
    finally:
        backend.close()


def _listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


@pytest.mark.parametrize("grpc", [False, True])
def test_connect_unreachable_fails_fast(grpc: bool) -> None:
    url = "http://127.0.0.1:9"  # discard port: nothing listens there
    if grpc and _listening("127.0.0.1", 6334):
        pytest.skip("a Qdrant gRPC port is open here (the client dials 6334 whatever the URL's port)")
    with pytest.raises(StoreError, match=r"^cannot reach Qdrant at http://127\.0\.0\.1:9: ") as info:
        ServerBackend.connect(url, prefer_grpc=grpc, timeout=3)
    assert "\n" not in str(info.value)


class _FakeQdrant(http.server.BaseHTTPRequestHandler):
    """Answers like a Qdrant server would: collections list ok, ``routes`` decide the rest."""

    routes: ClassVar[dict[str, tuple[int, dict]]] = {}

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        path = self.path.split("?")[0]
        status, body = self.routes.get(
            path, (200, {"result": {"collections": []}, "status": "ok", "time": 0})
        )
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_qdrant() -> Iterator[tuple[str, type[_FakeQdrant]]]:
    handler = type("Handler", (_FakeQdrant,), {"routes": {}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def _error(text: str) -> dict:
    return {"status": {"error": text}, "time": 0}


def test_rest_errors_become_one_line_kret_errors(fake_qdrant) -> None:
    url, handler = fake_qdrant
    backend = ServerBackend.connect(url)
    try:
        store = ServerStore(backend.client, "t_docs__v0001", NAME, "v0001")
        handler.routes["/collections/t_docs__v0001/points/count"] = (
            404,
            _error("Not found: Collection `t_docs__v0001` doesn't exist!"),
        )
        with pytest.raises(CollectionNotFoundError, match="'docs' version v0001 does not exist"):
            store.count_chunks()
        handler.routes["/collections/t_docs__v0001/facet"] = (
            400,
            _error("Bad request: No appropriate index for faceting: `meta.lang`.\nCreate one."),
        )
        with pytest.raises(StoreError, match=r"failed \(400\): Bad request: No appropriate index") as info:
            store.distinct_values("meta.lang")
        assert "\n" not in str(info.value)
    finally:
        backend.close()


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
def test_rest_refused_api_key_and_foreign_server(fake_qdrant) -> None:
    url, handler = fake_qdrant
    handler.routes["/collections"] = (401, _error("Must provide an API key or an Authorization bearer token"))
    with pytest.raises(StoreError, match="refused access"):
        ServerBackend.connect(url, api_key="wrong")
    handler.routes["/collections"] = (404, {"detail": "no such page"})
    with pytest.raises(StoreError, match=r"^cannot reach Qdrant at .*is it a Qdrant server"):
        ServerBackend.connect(url)


def test_grpc_errors_translate() -> None:
    import grpc

    class Failed(grpc.RpcError):
        def __init__(self, code: grpc.StatusCode, details: str) -> None:
            self._code, self._details = code, details

        def code(self) -> grpc.StatusCode:
            return self._code

        def details(self) -> str:
            return self._details

    def translate(code: grpc.StatusCode):
        return translate_error(Failed(code, "it went\nwrong"), "http://q:6333", "gone")

    assert isinstance(translate(grpc.StatusCode.NOT_FOUND), CollectionNotFoundError)
    assert (
        str(translate(grpc.StatusCode.UNAVAILABLE)) == "cannot reach Qdrant at http://q:6333: it went wrong"
    )
    assert "refused access" in str(translate(grpc.StatusCode.UNAUTHENTICATED))
    assert (
        str(translate(grpc.StatusCode.INTERNAL)) == "Qdrant at http://q:6333 failed (INTERNAL): it went wrong"
    )


def test_cluster_parameters_reach_create_collection() -> None:
    client = QdrantClient(":memory:")
    seen: dict = {}
    real = client.create_collection

    def spy(collection_name, **kw):
        seen.update(kw)
        return real(collection_name, **kw)

    client.create_collection = spy  # type: ignore[method-assign]
    backend = ServerBackend(
        client, prefix="t", shard_number=3, replication_factor=2, write_consistency_factor=1
    )
    try:
        _, s = new_live(backend)
        s.close()
        assert (seen["shard_number"], seen["replication_factor"], seen["write_consistency_factor"]) == (
            3,
            2,
            1,
        )
    finally:
        backend.close()


def test_edge_builds_the_index_during_long_writes_and_answers_the_same(edge_root: Path) -> None:
    """``optimize_every`` (the knob ``bench/store_scale.py`` measures) builds the index during a long write; the
    store then answers exactly as one built once at the end, and builds as often as asked."""
    from kret.engine.edge_store import EdgeStore

    docs = [
        document(f"d{i}", f"docs/d{i}.txt", "txt", {}, [{i % 11: 1.0, 100 + i: 0.5}] * 3) for i in range(60)
    ]
    answers = []
    for every, name in ((None, "once"), (50, "steps")):
        s = EdgeStore(edge_root / name, name, create=True, optimize_every=every)
        s.create(DIM, {"kret": "test"})
        builds: list[str] = []

        def counted(method, *a, _real=s._call, _builds=builds, **kw):
            _builds.append(method)
            return _real(method, *a, **kw)

        s._call = counted
        for i in range(0, len(docs), 6):
            s.write_documents(docs[i : i + 6])
        during = builds.count("optimize")
        s.finalize()
        # every match within the limit, compared with scores: equal-score chunks may come in another order
        queries = [spec(mode="dense", dense=dense(f"d{i}", 0), limit=200) for i in (0, 17, 59)]
        queries += [spec(mode="sparse", sparse=sparse({3: 1.0, 120: 1.0}), limit=200)]
        answers.append([sorted((h.id, round(h.score, 4)) for h in s.query(q)) for q in queries])
        answers[-1].append(s.count_chunks())
        s.close()
        # 240 points (3 chunks + 1 marker per document) in writes of 24: a build after every third write
        assert during == (0 if every is None else 3)
    assert answers[0] == answers[1]
    assert answers[0][-1] == 180 and len(answers[0][0]) == 180 and len(answers[0][3]) == 21
