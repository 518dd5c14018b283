"""Indexing pipeline with a tiny model: incremental runs, failures, consistency after interruption, locks,
model mismatch, filters."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kret.engine.store import DEFAULT_HNSW_EF
from kret.engine.types import SearchFilter
from kret.errors import (
    CollectionNotFoundError,
    EmptyQueryError,
    IndexInUseError,
    ModelMismatchError,
    UnknownFilterKeyError,
    UserInputError,
)

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "ko"


@pytest.fixture
def docs(tmp_path) -> Path:
    target = tmp_path / "docs"
    shutil.copytree(SAMPLES, target)
    return target


def _consistent(kr, name: str) -> dict[str, int]:
    """Every document marker has exactly its chunks; no chunk lacks a marker. Returns chunks per doc."""
    from kret.engine.collection import open_collection

    with open_collection(kr.backend, name) as coll:
        states = coll.store.doc_states()
        per_doc: dict[str, int] = {}
        for p in coll.store.scroll_chunks():
            per_doc[p.payload["doc_id"]] = per_doc.get(p.payload["doc_id"], 0) + 1
    assert set(per_doc) == set(states), "chunks without a document marker (half-written document)"
    for doc_id, st in states.items():
        assert per_doc[doc_id] == st.n_chunks, doc_id
    return per_doc


def test_incremental_index(tiny_kret, docs):
    s1 = tiny_kret.index([docs])
    # 5 files + 3 JSONL rows
    assert (s1.added, s1.updated, s1.unchanged, s1.deleted, s1.failed) == (8, 0, 0, 0, 0)
    assert s1.chunks >= 8
    s2 = tiny_kret.index([docs])
    assert (s2.added, s2.updated, s2.unchanged, s2.chunks) == (0, 0, 8, 0)

    (docs / "hangul.txt").write_text("한글은 세종대왕이 만들었다. 내용이 바뀌었다.", encoding="utf-8")
    (docs / "new.txt").write_text("새로 추가된 문서이다.", encoding="utf-8")
    (docs / "guides" / "subway.md").unlink()
    s3 = tiny_kret.index([docs])
    assert (s3.added, s3.updated, s3.unchanged, s3.deleted) == (1, 1, 6, 0)
    s4 = tiny_kret.index([docs], prune=True)
    assert (s4.added, s4.updated, s4.unchanged, s4.deleted) == (0, 0, 8, 1)
    per_doc = _consistent(tiny_kret, "default")
    assert not any(d.endswith("subway.md") for d in per_doc)
    hits = tiny_kret.search("세종대왕", k=3, mode="sparse")
    assert hits and hits[0].path.endswith("hangul.txt") and "바뀌었다" in hits[0].text


def test_prune_only_touches_the_given_folders(tiny_kret, tmp_path, docs):
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.txt").write_text("다른 폴더의 문서.", encoding="utf-8")
    tiny_kret.index([docs, other])
    s = tiny_kret.index([other], prune=True)
    assert s.deleted == 0 and s.unchanged == 1


def test_chunk_ids_are_deterministic(tiny_model_dir, tmp_path, docs):
    from kret.api import Kret

    ids = []
    for home in ("h1", "h2"):
        kr = Kret(home=tmp_path / home, model=str(tiny_model_dir))
        kr.index([docs])
        from kret.engine.collection import open_collection

        with open_collection(kr.backend, "default") as coll:
            ids.append(sorted(p.id for p in coll.store.scroll_chunks()))
    assert ids[0] == ids[1]


def test_bad_files_do_not_abort(tiny_kret, docs):
    (docs / "binary.txt").write_bytes(b"\x00\x01\x02garbage\x00" * 100)
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (docs / "broken.docx").write_bytes(b"not a zip")
    s = tiny_kret.index([docs])
    assert s.added == 8
    assert s.failed == 3
    reasons = {Path(f["path"]).name: f["reason"] for f in s.failures}
    assert set(reasons) == {"binary.txt", "broken.pdf", "broken.docx"}
    assert all(reasons.values())


def test_interrupted_index_is_consistent_and_resumable(tiny_kret, docs, monkeypatch):
    from kret.engine import ingest

    for i in range(30):
        (docs / f"extra{i:02d}.txt").write_text(f"추가 문서 {i}번. " * 20, encoding="utf-8")
    calls = {"n": 0}
    original = ingest.Ingestor._embed

    def flaky(self, texts):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, texts)

    monkeypatch.setattr(ingest.Ingestor, "_embed", flaky)
    # Embedding calls of at most 256 padded tokens: many calls, each followed by a write.
    monkeypatch.setattr(tiny_kret.settings, "embed_batch_tokens", 256)
    s = tiny_kret.index([docs])
    assert s.interrupted
    assert 0 < s.added < 38
    per_doc = _consistent(tiny_kret, "default")
    assert len(per_doc) == s.added
    monkeypatch.setattr(ingest.Ingestor, "_embed", original)
    s2 = tiny_kret.index([docs])
    assert not s2.interrupted and s2.added == 38 - s.added and s2.unchanged == s.added
    assert len(_consistent(tiny_kret, "default")) == 38


def test_second_user_gets_index_in_use(tiny_kret, docs):
    from kret.api import Kret

    tiny_kret.index([docs])
    searcher = tiny_kret.open()
    try:
        other = Kret(home=tiny_kret.settings.home, model=tiny_kret.settings.model)
        with pytest.raises(IndexInUseError, match="already open in this process"):
            other.index([docs])
    finally:
        searcher.collection.close()


def test_other_process_gets_index_in_use(tiny_kret, docs):
    """A second kret process on an embedded index gets one clear line, not a stack trace."""
    import os
    import subprocess
    import sys

    tiny_kret.index([docs])
    searcher = tiny_kret.open()
    try:
        env = {
            **os.environ,
            "KRET_HOME": str(tiny_kret.settings.home),
            "KRET_MODEL": tiny_kret.settings.model,
        }
        r = subprocess.run(
            [sys.executable, "-m", "kret.cli.main", "index", str(docs)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        listed = subprocess.run(
            [sys.executable, "-m", "kret.cli.main", "collections", "list", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        searcher.collection.close()
    assert r.returncode == 6
    assert "in use by another kret process" in r.stderr and "Traceback" not in r.stderr
    # listing does not fail on a busy collection: it says so
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert (row["name"], row["version"], row["in_use"]) == ("default", "v0001", True)


def test_model_mismatch_is_refused(tiny_kret, tiny_model_dir, tmp_path, docs):
    tiny_kret.index([docs])
    altered = tmp_path / "altered-model"
    shutil.copytree(tiny_model_dir, altered)
    (altered / "kret_model.json").unlink(missing_ok=True)
    cfg = altered / "config_sentence_transformers.json"
    cfg.write_text(cfg.read_text().replace("query: ", "question: "))
    with pytest.raises(ModelMismatchError) as err:
        tiny_kret.search("한글", model=str(altered))
    assert "tiny" in str(err.value) and "altered-model" in str(err.value)
    with pytest.raises(ModelMismatchError):
        tiny_kret.index([docs], model=str(altered))


def test_search_errors_and_filters(tiny_kret, docs):
    with pytest.raises(CollectionNotFoundError, match="kret index"):
        tiny_kret.search("한글")
    tiny_kret.index([docs])
    with pytest.raises(EmptyQueryError):
        tiny_kret.search("   ")
    with pytest.raises(UnknownFilterKeyError, match="nope"):
        tiny_kret.search("휴가", filter=SearchFilter(where={"nope": "x"}))
    hits = tiny_kret.search("휴가", k=10, filter=SearchFilter(where={"dept": "인사"}))
    assert hits and {h.payload["meta"]["dept"] for h in hits} == {"인사"}
    hits = tiny_kret.search("제주도", k=10, filter=SearchFilter(source_types=["md"]))
    assert hits and all(h.path.endswith(".md") for h in hits)
    hits = tiny_kret.search("제주도", k=10, filter=SearchFilter(path_glob="*.html"))
    assert hits and all(h.path.endswith("jeju.html") for h in hits)
    hits = tiny_kret.search("지하철", k=10, filter=SearchFilter(path_prefix=str(docs / "guides")))
    assert hits and all("/guides/" in h.path for h in hits)
    # particles and punctuation only: no lexical terms, hybrid still answers from the dense side
    hits = tiny_kret.search("은는이가?!", k=3)
    assert len(hits) == 3 and all("dense" in h.branches for h in hits)
    assert tiny_kret.search("은는이가?!", k=3, mode="sparse") == []
    long_query = "한글 " * 5000
    assert tiny_kret.search(long_query, k=3)


def test_hybrid_hits_carry_branch_scores(tiny_kret, docs):
    tiny_kret.index([docs])
    hits = tiny_kret.search("김장 문화 유네스코", k=5)
    assert hits[0].rank == 1
    assert any(set(h.branches) == {"dense", "sparse"} for h in hits)
    for h in hits:
        for b in h.branches.values():
            assert b.rank >= 1


def test_exact_search_and_beam_width_reach_the_store(tiny_kret, docs, monkeypatch):
    """``SearchOptions(exact=True)`` asks the store for brute-force neighbours (what bench/branch_runs.py's
    ``dense-exact`` branch measures HNSW against); the default keeps the graph; ``hnsw_ef`` (from the
    options, else from ``Settings.hnsw_ef``) reaches the store as the graph search's beam width."""
    from kret.engine.search import SearchOptions

    tiny_kret.index([docs], collection="c")
    searcher = tiny_kret.open("c")
    seen = []
    original = type(searcher.collection.store).query

    def query(store, spec):
        seen.append((spec.exact, spec.hnsw_ef))
        return original(store, spec)

    monkeypatch.setattr(type(searcher.collection.store), "query", query)
    try:
        default = searcher.search("김치", SearchOptions(mode="dense"))
        exact = searcher.search("김치", SearchOptions(mode="dense", exact=True))
        wide = searcher.search("김치", SearchOptions(mode="hybrid", hnsw_ef=500))
        tiny_kret.settings.hnsw_ef = 64
        searcher.search("김치", tiny_kret.search_options(mode="dense"))
    finally:
        searcher.collection.close()
    assert seen == [(False, DEFAULT_HNSW_EF), (True, DEFAULT_HNSW_EF), (False, 500), (False, 64)]
    assert [h.chunk_id for h in exact] == [h.chunk_id for h in default]  # a small collection: the same hits
    assert wide
    with pytest.raises(UserInputError, match="hnsw_ef"):
        SearchOptions(hnsw_ef=0).validate()


def _lexical_weights(kr, name: str) -> dict[str, float]:
    """The stored BM25 weight of each Kiwi term of the one chunk in collection ``name``."""
    from kret.engine.collection import open_collection
    from kret.engine.sparse import KiwiBM25Encoder, term_id

    with open_collection(kr.backend, name) as coll:
        (point,) = list(coll.store.scroll_chunks(with_vectors=True))
    weights = dict(zip(point.sparse.indices, point.sparse.values, strict=True))
    return {t: weights[term_id(t)] for t in KiwiBM25Encoder().terms("훈민정음 한글 이름")}


def _one_titled_row(folder: Path) -> Path:
    folder.mkdir()
    row = {"id": "h", "title": "훈민정음", "text": "훈민정음은 한글의 옛 이름이다."}
    (folder / "rows.jsonl").write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    return folder


def test_bm25_indexes_the_title_even_when_the_text_begins_with_it(tiny_kret, tmp_path):
    """BEIR's ``title + " " + text``: the dense text drops a title the text already starts with, BM25's does
    not (the repeated title term counts twice: bench/README.md §2g measured why)."""
    tiny_kret.index([_one_titled_row(tmp_path / "a")], collection="titled")
    w = _lexical_weights(tiny_kret, "titled")
    assert w["훈민정음"] > w["한글"] == pytest.approx(w["이름"])
    from kret.engine.collection import open_collection

    with open_collection(tiny_kret.backend, "titled") as coll:
        assert coll.manifest["sparse"]["text"] == "title-always"


def test_a_collection_keeps_the_lexical_text_rule_it_was_built_with(tiny_kret, tmp_path):
    """A collection made before the rule was recorded indexed BM25 on the embedded text; documents added to
    it later must be indexed the same way, or its BM25 statistics mix two texts."""
    from kret.engine.collection import open_collection

    tiny_kret.index([_one_titled_row(tmp_path / "seed")], collection="old")
    with open_collection(tiny_kret.backend, "old") as coll:
        manifest = coll.manifest
        del manifest["sparse"]["text"]
        coll.store.write_manifest(manifest)
        coll.store.delete_documents(list(coll.store.doc_states()))
    tiny_kret.index([_one_titled_row(tmp_path / "later")], collection="old")
    w = _lexical_weights(tiny_kret, "old")
    assert w["훈민정음"] == pytest.approx(w["한글"]) == pytest.approx(w["이름"])
