"""`kret reindex`: a new collection version from stored chunks with another model, switched atomically while
searches keep answering; `kret gc` removes the old version afterwards. Runs on Edge and on the server code
path (qdrant-client in-memory)."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "ko"


@pytest.fixture
def other_model(tiny_model_dir, tmp_path) -> Path:
    """Same weights, different prompts: a different fingerprint and different vectors."""
    target = tmp_path / "other-model"
    shutil.copytree(tiny_model_dir, target)
    (target / "kret_model.json").unlink(missing_ok=True)
    cfg = target / "config_sentence_transformers.json"
    cfg.write_text(cfg.read_text().replace("passage: ", "document: "))
    return target


@pytest.mark.parametrize("backend", ["edge", "memory"])
def test_reindex_switches_atomically(backend, home, tiny_model_dir, other_model):
    from kret.api import Kret

    overrides = {"qdrant_url": ":memory:"} if backend == "memory" else {}
    kr = Kret(home=home, model=str(tiny_model_dir), **overrides)
    kr.index([SAMPLES])
    before = kr.collection_info("default")
    reader = kr.open()
    errors: list[BaseException] = []
    answered = []
    stop = threading.Event()

    def keep_searching() -> None:
        while not stop.is_set():
            try:
                hits = reader.search("한글 창제")
                answered.append(hits[0].payload["doc_id"])
            except BaseException as exc:  # noqa: BLE001 - any failure is the test's failure
                errors.append(exc)
                return

    thread = threading.Thread(target=keep_searching)
    thread.start()
    try:
        result = kr.reindex("default", model=str(other_model), reader=reader)
    finally:
        stop.set()
        thread.join()
        reader.collection.close()
    assert not errors
    assert answered, "searches must keep answering during the rebuild"
    assert result["old_version"] == before["version"] and result["new_version"] != before["version"]
    after = kr.collection_info("default")
    assert after["version"] == result["new_version"]
    assert after["model"]["fingerprint"] != before["model"]["fingerprint"]
    assert after["chunks"] == before["chunks"] and after["documents"] == before["documents"]
    assert kr.backend.versions("default") == sorted([before["version"], after["version"]])
    hits = kr.search("세종대왕", k=3, mode="sparse")  # lexical vectors carried over unchanged
    assert hits and hits[0].path.endswith("hangul.txt")
    assert kr.search("한글", k=3, model=str(other_model))
    assert kr.gc() == [f"default/{before['version']}"]
    assert kr.backend.versions("default") == [after["version"]]


def _vectors(kr, name: str) -> dict[str, tuple[list[float], list[int], list[float]]]:
    from kret.engine.collection import open_collection

    with open_collection(kr.backend, name) as coll:
        return {
            p.id: (list(p.dense), list(p.sparse.indices), list(p.sparse.values))
            for p in coll.store.scroll_chunks(with_vectors=True)
        }


def _lex_lens(kr, name: str) -> dict[str, int]:
    from kret.engine.collection import open_collection

    with open_collection(kr.backend, name) as coll:
        return {d: s.lex_len for d, s in coll.store.doc_states().items()}


@pytest.mark.parametrize("backend", ["edge", "memory"])
def test_lexical_reindex_equals_a_fresh_index_and_keeps_the_dense_vectors(backend, home, tiny_model_dir):
    """A collection made under the older lexical text rule moves to today's with ``reindex(lexical=True)``:
    its BM25 vectors and lengths become exactly those of a fresh index, its dense vectors stay as they were
    (nothing is re-embedded)."""
    from kret.api import Kret

    overrides = {"qdrant_url": ":memory:"} if backend == "memory" else {}
    kr = Kret(home=home, model=str(tiny_model_dir), **overrides)
    older = Kret(home=home, model=str(tiny_model_dir), lexical_text="as-embedded", **overrides)
    if backend == "memory":
        older._backend = kr.backend  # local mode lives in one client: both must see the same collections
    older.index([SAMPLES], collection="old")
    kr.index([SAMPLES], collection="fresh")
    before = _vectors(kr, "old")
    fresh = _vectors(kr, "fresh")
    assert kr.collection_info("old")["sparse"]["text"] == "as-embedded"
    assert any(before[i][2] != fresh[i][2] for i in fresh), "the samples have titles the rule repeats"

    hint = kr.index([SAMPLES], collection="old").warnings
    assert any("--lexical" in w and "'as-embedded'" in w for w in hint), hint
    assert not kr.index([SAMPLES], collection="fresh").warnings

    result = kr.reindex("old", lexical=True)
    assert not kr.index([SAMPLES], collection="old").warnings
    after = _vectors(kr, "old")
    assert result["lexical_text"] == kr.collection_info("old")["sparse"]["text"] == "title-always"
    assert set(after) == set(fresh)
    for i, (dense, indices, values) in after.items():
        # kept, not re-embedded (local mode re-normalises a cosine vector on upsert: float32 noise)
        assert dense == pytest.approx(before[i][0], abs=1e-6)
        assert indices == fresh[i][1] and values == pytest.approx(fresh[i][2], rel=1e-6)
    assert _lex_lens(kr, "old") == _lex_lens(kr, "fresh")
    assert kr.search("세종대왕", k=3, mode="sparse", collection="old")[0].path.endswith("hangul.txt")


def test_reindex_needs_something_to_rebuild(home, tiny_model_dir):
    from kret.api import Kret
    from kret.errors import UserInputError

    with pytest.raises(UserInputError, match="--model.*--lexical"):
        Kret(home=home, model=str(tiny_model_dir)).reindex("default")
