"""Large documents (engine/ingest.py): streamed chunking, parts committed with a pending marker, invisible to
search until complete, resumed after an interrupt or a kill -9, restarted when the file changed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from kret.engine import ingest
from kret.engine.store import Condition

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "ko"
PART = 6_000  # characters per part: the big document below is written in ~8 parts
BIG_MARK = "큰문서표지"  # a word only the big document has


def big_text(n_lines: int = 300, variant: str = "") -> str:
    """~50k characters of Korean, one paragraph (no blank line): the shape of the 50 MB file that
    motivated parts, at a size the tiny model embeds in seconds."""
    base = (SAMPLES / "hangul.txt").read_text(encoding="utf-8").split()
    lines = []
    for i in range(n_lines):
        words = " ".join(base[(i * 7 + k) % len(base)] for k in range(24))
        lines.append(f"{BIG_MARK}{variant} {i}번째 줄입니다. {words}.")
    return "\n".join(lines) + "\n"


@pytest.fixture
def folder(tmp_path) -> Path:
    target = tmp_path / "docs"
    target.mkdir()
    (target / "hangul.txt").write_text((SAMPLES / "hangul.txt").read_text(encoding="utf-8"), encoding="utf-8")
    (target / "big.txt").write_text(big_text(), encoding="utf-8")
    return target


def make_kret(home: Path, tiny_model_dir: Path):
    from kret.api import Kret

    return Kret(home=home, model=str(tiny_model_dir), embed_batch_size=16, large_doc_chars=PART)


def snapshot(kr) -> dict:
    """Everything stored, by kind: markers, pending markers, live chunks and part points."""
    from kret.engine.collection import open_collection

    with open_collection(kr.backend, "default") as coll:
        store = coll.store
        chunks = {p.id: p for p in store.scroll_chunks(with_vectors=True)}
        parts = list(store._scroll([Condition("kind", "part")], with_vectors=False, batch=1024))
        return {
            "states": store.doc_states(),
            "pending": store.pending_documents(),
            "chunks": chunks,
            "parts": parts,
            "count": store.count_chunks(),
        }


def doc_chunks(snap: dict, name: str) -> list:
    return [p for p in snap["chunks"].values() if p.payload["path"].endswith(name)]


class EmbedCounter:
    """Counts texts embedded; raises KeyboardInterrupt on call number ``stop_at`` (an interrupt mid-run)."""

    def __init__(self, monkeypatch, stop_at: int | None = None) -> None:
        self.calls = 0
        self.texts = 0
        self.stop_at = stop_at
        original = ingest.Ingestor._embed
        counter = self

        def counted(self_, texts):
            counter.calls += 1
            if counter.stop_at is not None and counter.calls == counter.stop_at:
                raise KeyboardInterrupt
            counter.texts += len(texts)
            return original(self_, texts)

        monkeypatch.setattr(ingest.Ingestor, "_embed", counted)


def assert_complete_or_absent(kr, snap: dict) -> None:
    """The product invariant, as search and the next run see it."""
    per_doc: dict[str, int] = {}
    for p in snap["chunks"].values():
        per_doc[p.payload["doc_id"]] = per_doc.get(p.payload["doc_id"], 0) + 1
    for doc_id, n in per_doc.items():
        st = snap["states"].get(doc_id) or snap["pending"].get(doc_id)
        assert st is not None, f"live chunks of {doc_id} without any marker"
        assert n == st.n_chunks, f"{doc_id}: {n} live chunks, marker says {st.n_chunks}"
    for doc_id, st in snap["states"].items():
        assert per_doc.get(doc_id, 0) == st.n_chunks


def test_interrupted_large_document_is_invisible_then_resumes(folder, tiny_model_dir, tmp_path, monkeypatch):
    kr = make_kret(tmp_path / "home", tiny_model_dir)
    stop = EmbedCounter(monkeypatch, stop_at=12)  # hangul.txt, then a few parts of big.txt
    s1 = kr.index([folder])
    assert s1.interrupted and s1.added == 1  # the small file; the big one is not complete
    assert any("big.txt" in w and "resumes" in w for w in s1.warnings), s1.warnings

    snap = snapshot(kr)
    big_id = next(iter(snap["pending"]))
    committed = snap["pending"][big_id].n_chunks
    assert committed > 0 and big_id not in snap["states"]
    assert len(snap["parts"]) == committed  # parts are stored ...
    assert not doc_chunks(snap, "big.txt")  # ... but none is a live chunk
    assert snap["count"] == len(snap["chunks"])
    assert_complete_or_absent(kr, snap)
    # Search never returns a part: with hundreds of part vectors stored, a dense top-10 would be full of them.
    for mode in ("dense", "sparse", "hybrid"):
        hits = kr.search(f"{BIG_MARK} 3번째 줄", k=10, mode=mode)
        assert all(h.path.endswith("hangul.txt") for h in hits), mode

    stop.stop_at = None
    stop.texts = 0
    s2 = kr.index([folder])
    assert not s2.interrupted and (s2.added, s2.unchanged) == (1, 1)
    snap2 = snapshot(kr)
    total = snap2["states"][big_id].n_chunks
    assert stop.texts == total - committed  # only what was not stored yet was embedded
    assert not snap2["pending"] and not snap2["parts"]
    assert_complete_or_absent(kr, snap2)
    hits = kr.search(f"{BIG_MARK} 3번째 줄", k=3, mode="sparse")
    assert hits and hits[0].path.endswith("big.txt")

    # Identical to an uninterrupted run: same chunks, same dense and lexical vectors.
    fresh = make_kret(tmp_path / "fresh", tiny_model_dir)
    fresh.index([folder])
    ref = snapshot(fresh)
    assert sorted(ref["chunks"]) == sorted(snap2["chunks"])
    assert ref["states"][big_id].lex_len == snap2["states"][big_id].lex_len
    for pid, p in ref["chunks"].items():
        q = snap2["chunks"][pid]
        assert p.payload == q.payload
        assert np.allclose(p.dense, q.dense, atol=1e-6)
        assert p.sparse.indices == q.sparse.indices
        assert np.allclose(p.sparse.values, q.sparse.values, atol=1e-6)


def test_resume_starts_at_the_stored_cursor_without_walking_the_stored_text(
    folder, tiny_model_dir, tmp_path, monkeypatch
):
    """The resumed run neither embeds nor chunks what is stored: on the 50 MB file re-chunking the stored
    prefix cost 465 s of a resume (bench/README.md §7). The pending marker carries the next part's first
    character, and the block walk starts there."""
    from kret.indexer import chunker as chunker_mod

    kr = make_kret(tmp_path / "home", tiny_model_dir)
    stop = EmbedCounter(monkeypatch, stop_at=12)
    assert kr.index([folder]).interrupted
    ((big_id, pending),) = snapshot(kr)["pending"].items()
    text = (folder / "big.txt").read_text(encoding="utf-8")
    assert 0 < pending.next_char < len(text)

    walked: list[tuple[int, int]] = []  # (start, characters of paragraphs handed to the chunker)
    original = chunker_mod._iter_blocks

    def spy(text, max_chars=None, start=0):
        walked.append((start, 0))
        for block in original(text, max_chars, start):
            walked[-1] = (start, walked[-1][1] + len(block[1]))
            yield block

    monkeypatch.setattr(chunker_mod, "_iter_blocks", spy)
    stop.stop_at = None
    kr.index([folder])
    assert [w[0] for w in walked] == [pending.next_char]  # hangul.txt is unchanged: not chunked at all
    assert walked[0][1] <= len(text) - pending.next_char
    assert not snapshot(kr)["pending"]


def test_a_pending_marker_without_a_cursor_starts_over(folder, tiny_model_dir, tmp_path, monkeypatch):
    """Parts stored by a kret that recorded no cursor cannot be resumed safely (their chunk boundaries came
    from whole-document chunking): the document is rewritten from the start, never spliced."""
    from kret.engine import store as store_mod

    kr = make_kret(tmp_path / "home", tiny_model_dir)
    EmbedCounter(monkeypatch, stop_at=12)
    original = store_mod.state_point
    monkeypatch.setattr(
        store_mod, "state_point", lambda st, kind: original(replace(st, next_char=None), kind)
    )
    monkeypatch.setattr("kret.engine.edge_store.state_point", store_mod.state_point)
    assert kr.index([folder]).interrupted
    ((big_id, pending),) = snapshot(kr)["pending"].items()
    assert pending.next_char is None and pending.n_chunks > 0

    monkeypatch.undo()
    counter = EmbedCounter(monkeypatch)
    kr.index([folder])
    done = snapshot(kr)
    assert counter.texts == done["states"][big_id].n_chunks  # every chunk embedded again
    assert_complete_or_absent(kr, done)


def test_full_disk_between_parts_stops_with_one_line_and_resumes(
    folder, tiny_model_dir, tmp_path, monkeypatch
):
    """A large document's parts are writes too: a disk that fills up between two parts is refused before
    Edge's mmap'd files can SIGBUS, the parts already written stay, and the next run resumes after them."""
    from kret.engine import diskspace
    from kret.engine.edge_store import EdgeStore
    from kret.errors import DiskSpaceError

    kr = make_kret(tmp_path / "home", tiny_model_dir)
    real_free = diskspace.free_bytes
    parts = {"n": 0, "full": False}
    original = EdgeStore.write_part

    def write_part(self, state, points):
        parts["full"] = parts["n"] == 2  # the third part finds the disk full
        original(self, state, points)
        parts["n"] += 1

    monkeypatch.setattr(EdgeStore, "write_part", write_part)
    monkeypatch.setattr(diskspace, "free_bytes", lambda path: 0 if parts["full"] else real_free(path))
    with pytest.raises(DiskSpaceError) as err:
        kr.index([folder])
    assert "write part of" in str(err.value) and "resumes" in str(err.value)
    assert parts["n"] == 2
    parts["full"] = False
    monkeypatch.setattr(diskspace, "free_bytes", real_free)
    snap = snapshot(kr)
    ((big_id, pending),) = snap["pending"].items()
    assert len(snap["parts"]) == pending.n_chunks > 0
    assert_complete_or_absent(kr, snap)

    monkeypatch.setattr(EdgeStore, "write_part", original)
    kr.index([folder])
    done = snapshot(kr)
    assert not done["pending"] and not done["parts"] and big_id in done["states"]
    assert_complete_or_absent(kr, done)


def test_stop_between_flip_and_marker_is_finished_without_embedding(
    folder, tiny_model_dir, tmp_path, monkeypatch
):
    """The two operations of the final step, cut apart: the document is complete for search at once, and
    the next run only writes its marker."""
    from kret.engine.edge_store import EdgeStore

    kr = make_kret(tmp_path / "home", tiny_model_dir)
    original = EdgeStore.commit_parts

    def flip_only(self, state):
        q = __import__("qdrant_edge")
        parts = self._filter([Condition("doc_id", state.doc_id), Condition("kind", "part")])
        self._update(q.UpdateOperation.set_payload_by_filter(parts, {"kind": "chunk"}))
        raise KeyboardInterrupt

    monkeypatch.setattr(EdgeStore, "commit_parts", flip_only)
    assert kr.index([folder]).interrupted
    snap = snapshot(kr)
    ((big_id, pending),) = snap["pending"].items()
    assert len(doc_chunks(snap, "big.txt")) == pending.n_chunks  # complete, as search sees it
    assert_complete_or_absent(kr, snap)

    monkeypatch.setattr(EdgeStore, "commit_parts", original)
    counter = EmbedCounter(monkeypatch)
    s2 = kr.index([folder])
    assert s2.added == 1 and counter.texts == 0
    snap2 = snapshot(kr)
    assert snap2["states"][big_id].n_chunks == pending.n_chunks and not snap2["pending"]


def test_changed_large_document_starts_over_and_prune_drops_parts(
    folder, tiny_model_dir, tmp_path, monkeypatch
):
    kr = make_kret(tmp_path / "home", tiny_model_dir)
    counter = EmbedCounter(monkeypatch, stop_at=10)
    assert kr.index([folder]).interrupted
    assert snapshot(kr)["pending"]

    (folder / "big.txt").write_text(big_text(variant="새"), encoding="utf-8")
    counter.stop_at, counter.texts, counter.calls = 10, 0, 0
    assert kr.index([folder]).interrupted
    snap = snapshot(kr)
    ((big_id, pending),) = snap["pending"].items()
    # Only parts of the new content are left: the old ones were deleted before the first new part.
    hashes = {rec.payload["doc_hash"] for rec in snap["parts"]}
    assert hashes == {pending.doc_hash} and len(snap["parts"]) == pending.n_chunks
    assert counter.texts >= pending.n_chunks

    (folder / "big.txt").unlink()
    s = kr.index([folder], prune=True)
    assert s.deleted == 1
    snap = snapshot(kr)
    assert not snap["pending"] and not snap["parts"]


def test_kill_9_during_parts_keeps_search_consistent_and_resumes(folder, tiny_model_dir, tmp_path):
    """A real kill -9 (the process kills itself right after its second part is committed)."""
    home = tmp_path / "home"
    script = textwrap.dedent(
        f"""
        import os, signal
        from kret.api import Kret
        from kret.engine.edge_store import EdgeStore

        original = EdgeStore.write_part
        n = 0

        def write_part(self, state, points):
            global n
            original(self, state, points)
            n += 1
            if n == 2:
                os.kill(os.getpid(), signal.SIGKILL)

        EdgeStore.write_part = write_part
        Kret(home={str(home)!r}, model={str(tiny_model_dir)!r}, embed_batch_size=16,
             large_doc_chars={PART}).index([{str(folder)!r}])
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == -9, proc.stderr[-2000:]

    kr = make_kret(home, tiny_model_dir)
    snap = snapshot(kr)
    ((big_id, pending),) = snap["pending"].items()
    assert len(snap["parts"]) == pending.n_chunks > 0
    assert_complete_or_absent(kr, snap)
    assert all(h.path.endswith("hangul.txt") for h in kr.search(f"{BIG_MARK} 1번째", k=10, mode="dense"))

    s = kr.index([folder])
    assert s.added == 1 and s.unchanged == 1
    snap = snapshot(kr)
    assert not snap["parts"] and snap["states"][big_id].n_chunks == len(doc_chunks(snap, "big.txt"))


def test_chunker_never_hands_kiwi_or_the_tokenizer_a_whole_huge_paragraph(tiny_model_dir, monkeypatch):
    """Memory stays bounded by a slice: a 100k-character paragraph reaches Kiwi and the tokenizer in
    slices of at most MAX_SLICE_CHARS (lowered to 5k here, so the paragraph is twenty slices), and the chunks
    still cover the text in order."""
    from kret.indexer import chunker as chunker_mod
    from kret.indexer.chunker import Chunker, ChunkingParams
    from kret.indexer.document import Document
    from kret.korean import get_kiwi

    monkeypatch.setattr(chunker_mod, "MAX_SLICE_CHARS", 5_000)
    seen: list[int] = []
    kiwi = get_kiwi()
    split = kiwi.split_into_sents

    class SpyKiwi:
        def split_into_sents(self, text, *a, **kw):
            seen.append(len(text))
            return split(text, *a, **kw)

    monkeypatch.setattr("kret.korean.get_kiwi", lambda: SpyKiwi())
    counted: list[int] = []

    def count_tokens(texts):
        counted.extend(len(t) for t in texts)
        return [max(1, len(t) // 2) for t in texts]

    ch = Chunker(count_tokens, ChunkingParams(120, 20))
    text = " ".join(f"{i}번째 문장입니다." for i in range(10_000))  # one line, no newline at all
    assert len(text) > 100_000
    chunks = list(ch.iter_chunks(Document("d", text, "d.txt", "txt")))
    assert len(seen) >= 20 and max(seen) <= 5_000
    assert max(counted) <= 5_000
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))
    assert "9999번째" in chunks[-1].text and chunks[0].text.startswith("0번째")
