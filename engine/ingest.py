"""Embedding and storing documents: the engine half of ``kret index``.

Crash consistency: a document is written — its old chunks deleted, its new chunks and one marker carrying
the content hash upserted — only once *all* its chunks have vectors. Qdrant applies an operation whole, so
after a kill a document is either fully there with its hash, or absent, and the next run redoes it.

Order of work: the chunks of a run are embedded sorted by token length, in batches of a token budget
(``engine/batching``), not in document order, so padding costs little. Documents therefore complete out of
order; each embedding batch is followed by one write of the documents it completed. The run is cut into
waves (``WAVE_DOCS`` documents or ``WAVE_CHUNKS`` chunks), which bounds what is held in memory for
documents still waiting for a vector.

Large documents (more than ``part_chars`` characters, e.g. one 50 MB text file) would otherwise be
all-or-nothing: hours of embedding, every chunk and vector in memory, nothing kept after an interrupt.
They are chunked as a stream, in parts of about ``part_chars`` characters (``Chunker.iter_parts``), and
committed part by part:

1. the document's old points are deleted (it is absent from search while it is rewritten), unless an
   earlier run left parts of the *same content hash*: then the run resumes after them, at the character
   recorded on the pending marker, without walking the text before it;
2. each part is one upsert of its chunk points with ``kind="part"`` plus a *pending* marker (the document
   marker's point id, ``kind="pending"``) recording how many chunks and BM25 terms are committed so far and
   where the next part starts (character offset and section heading);
3. after the last part, one operation turns the document's parts into ``kind="chunk"``, then the final
   ``kind="doc"`` marker overwrites the pending one.

Search only returns ``kind="chunk"`` points, so a document in parts is invisible until step 3 flips all of
it at once: after ``kill -9`` every document is, as search sees it, complete or absent. A kill between the
flip and the final marker leaves a complete, searchable document without its marker; the next run finds
the pending marker with the same hash, has nothing left to embed and writes the marker. A document whose
file changed in between starts again from scratch (its stale parts are deleted in step 1); ``--prune``
also removes the parts of files that are gone.

BM25 needs the average chunk length. It is rebuilt from the per-document term counts on the markers at the
start of every run (never drifts), then updated wave by wave (and part by part): all chunks of a wave are
tokenised first (Kiwi is ~30x faster than the encoder), so their own lengths count in the average they are
scored with.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from kret.engine.batching import Completion, token_batches
from kret.engine.collection import Collection, recorded_lexical_text
from kret.engine.embedder import Embedder
from kret.engine.sparse import KiwiBM25Encoder
from kret.engine.store import PART_KIND, DocState, DocumentWrite, Store
from kret.engine.types import ProgressFn, StoredPoint
from kret.indexer.chunker import Chunker, ChunkPart, PartCursor
from kret.indexer.document import Chunk, Document

WAVE_DOCS = 5000
WAVE_CHUNKS = 20_000
#: Default size of a large document's parts, in characters (~180k e5 tokens of Korean: about a minute of
#: embedding on two CPU cores with torch fp32). Longer documents are written in parts.
PART_CHARS = 262_144


@dataclass
class IndexSummary:
    """What one indexing run did; ``--json`` prints exactly this."""

    collection: str
    model: str
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    # Inputs read without error that gave nothing to index (empty file, no text layer, only markup,
    # 0 chunks) and parts of files left out (a JSONL line as ``path:line``), each with its reason.
    skipped: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    chunks: int = 0
    seconds: float = 0.0
    interrupted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "model": self.model,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
            "failed": self.failed,
            "failures": self.failures,
            "skipped": self.skipped,
            "warnings": self.warnings,
            "chunks": self.chunks,
            "seconds": round(self.seconds, 3),
            "interrupted": self.interrupted,
        }


def chunk_payload(doc: Document, chunk: Chunk, doc_hash: str | None = None) -> dict[str, Any]:
    """A chunk point's payload. Pass ``doc_hash`` when writing many chunks of one document: the content
    hash is recomputed over the whole text on every access (a 50 MB file has ~40k chunks)."""
    return {
        "kind": "chunk",
        "doc_id": doc.doc_id,
        "chunk_index": chunk.chunk_index,
        "text": chunk.text,
        "title": chunk.title,
        "heading": chunk.heading,
        "path": doc.path,
        "source_type": doc.source_type,
        "doc_hash": doc_hash if doc_hash is not None else doc.content_hash,
        "mtime": doc.mtime,
        "meta": doc.metadata,
    }


class _LexStats:
    """Chunks and Kiwi terms in the collection, for BM25's average chunk length."""

    def __init__(self, n_chunks: int = 0, total_len: int = 0) -> None:
        self.n_chunks = n_chunks
        self.total_len = total_len

    def add(self, n_chunks: int, total_len: int) -> None:
        self.n_chunks += n_chunks
        self.total_len += total_len

    @property
    def avgdl(self) -> float:
        return max(self.total_len / max(self.n_chunks, 1), 1.0)


def _tokens_text(lengths: Sequence[int], batch: Sequence[int]) -> int:
    return sum(lengths[i] for i in batch)


class Ingestor:
    """Writes new and changed documents into one collection (see the module docstring for the protocol)."""

    def __init__(
        self,
        collection: Collection,
        embedder: Embedder,
        encoder: KiwiBM25Encoder,
        chunker: Chunker,
        *,
        batch_tokens: int | None = None,
        part_chars: int = PART_CHARS,
    ) -> None:
        self.collection = collection
        self.embedder = embedder
        self.encoder = encoder
        self.chunker = chunker
        self.batch_tokens = batch_tokens or default_batch_tokens(embedder)
        self.part_chars = part_chars
        # What BM25 indexes is the collection's recorded rule, so later documents match earlier ones.
        self.lexical_rule = recorded_lexical_text(collection.manifest)

    @property
    def store(self) -> Store:
        return self.collection.store

    def write(
        self,
        docs: Sequence[Document],
        states: dict[str, DocState],
        progress: ProgressFn | None = None,
    ) -> int:
        """Embed and store ``docs`` (new or changed); returns the number of chunks written.

        Progress: ``stage="embed"`` calls advance by the documents written and carry the ``chunks`` and
        (unpadded) ``tokens`` embedded since the previous call; ``note`` announces a large document.
        """
        replacing = {d.doc_id for d in docs}
        kept = [s for s in states.values() if s.doc_id not in replacing]
        stats = _LexStats(sum(s.n_chunks for s in kept), sum(s.lex_len for s in kept))
        small = [d for d in docs if len(d.text) <= self.part_chars]
        large = [d for d in docs if len(d.text) > self.part_chars]
        written = 0
        for wave in self._waves(small):
            written += self._write_wave(wave, stats, progress)
        if large:
            pending = self.store.pending_documents()
            for doc in large:
                written += self._write_large(doc, pending.get(doc.doc_id), stats, progress)
        return written

    # small documents: waves sorted by length -------------------------------------------------------------
    def _waves(self, docs: Sequence[Document]) -> Iterator[list[tuple[Document, list[Chunk]]]]:
        wave: list[tuple[Document, list[Chunk]]] = []
        size = 0
        for d in docs:
            cs = self.chunker.chunk(d)
            wave.append((d, cs))
            size += len(cs)
            if len(wave) >= WAVE_DOCS or size >= WAVE_CHUNKS:
                yield wave
                wave, size = [], 0
        if wave:
            yield wave

    def _write_wave(
        self, wave: list[tuple[Document, list[Chunk]]], stats: _LexStats, progress: ProgressFn | None
    ) -> int:
        chunks = [c for _, cs in wave for c in cs]
        texts = [c.embed_text for c in chunks]
        terms = self.encoder.terms_batch([c.lexical_text(self.lexical_rule) for c in chunks])
        stats.add(len(texts), sum(len(t) for t in terms))
        avgdl = stats.avgdl
        owners = [i for i, (_, cs) in enumerate(wave) for _ in cs]
        starts = np.cumsum([0] + [len(cs) for _, cs in wave]).tolist()
        completion = Completion([len(cs) for _, cs in wave])
        vectors: list[np.ndarray | None] = [None] * len(texts)

        def writes(done: list[int]) -> list[DocumentWrite]:
            out = []
            for o in done:
                doc, cs = wave[o]
                doc_hash = doc.content_hash
                a, b = starts[o], starts[o + 1]
                sparse = self.encoder.encode_documents(terms[a:b], avgdl)
                points = [
                    StoredPoint(
                        c.chunk_id, vectors[a + j].tolist(), sparse[j], chunk_payload(doc, c, doc_hash)
                    )
                    for j, c in enumerate(cs)
                ]
                out.append(
                    DocumentWrite(
                        doc.doc_id,
                        doc_hash,
                        doc.path,
                        points,
                        lex_len=sum(len(t) for t in terms[a:b]),
                    )
                )
                for j in range(a, b):
                    vectors[j] = None  # written: let the memory go
            return out

        empty = completion.empty()  # documents without chunks: a marker only
        if empty:
            self._store(writes(empty), progress, 0, 0)
        lengths = self.embedder.count_tokens(texts)
        for batch in token_batches(lengths, self.batch_tokens, max_len=self.embedder.max_seq_length):
            dense = self._embed([texts[i] for i in batch])
            for j, i in enumerate(batch):
                vectors[i] = dense[j]
            done = completion.done(owners[i] for i in batch)
            self._store(writes(done), progress, len(batch), _tokens_text(lengths, batch))
        return len(texts)

    def _embed(self, texts: list[str]) -> np.ndarray:
        """One embedding call (one token-budget batch)."""
        return self.embedder.encode_passages(texts)

    def _store(
        self, writes: list[DocumentWrite], progress: ProgressFn | None, chunks: int, tokens: int
    ) -> None:
        if writes:
            self.store.write_documents(writes)
        if progress:
            progress(stage="embed", advance=len(writes), chunks=chunks, tokens=tokens)

    # large documents: streamed, committed in parts ---------------------------------------------------------
    def _write_large(
        self, doc: Document, pending: DocState | None, stats: _LexStats, progress: ProgressFn | None
    ) -> int:
        doc_hash = doc.content_hash
        # A pending marker without a cursor was written before parts were resumable: start over.
        resume = pending is not None and pending.doc_hash == doc_hash and pending.next_char is not None
        if resume:
            state = replace(pending, path=doc.path)
            stats.add(state.n_chunks, state.lex_len)
        else:
            # Old version, stale parts and pending marker of this document: the rewrite starts clean.
            self.store.delete_documents([doc.doc_id])
            state = DocState(doc.doc_id, doc_hash, doc.path, n_chunks=0, next_char=0)
        if progress:
            where = (
                f", resuming after {state.n_chunks} chunks already stored (character {state.next_char:,})"
                if resume and state.n_chunks
                else ""
            )
            progress(
                note=f"{doc.path}: large document ({len(doc.text):,} characters), "
                f"committed in parts of ~{self.part_chars:,} characters{where}"
            )
        written = 0
        cursor = PartCursor(state.next_char or 0, state.n_chunks, state.heading)
        for part in self.chunker.iter_parts(doc, self.part_chars, cursor):
            if part.chunks:
                written += self._write_part(doc, part, state, stats, progress)
        self.store.commit_parts(state)
        if progress:
            progress(stage="embed", advance=1)
        return written

    def _write_part(
        self, doc: Document, part: ChunkPart, state: DocState, stats: _LexStats, progress: ProgressFn | None
    ) -> int:
        chunks = part.chunks
        texts = [c.embed_text for c in chunks]
        terms = self.encoder.terms_batch([c.lexical_text(self.lexical_rule) for c in chunks])
        lex = sum(len(t) for t in terms)
        stats.add(len(texts), lex)
        sparse = self.encoder.encode_documents(terms, stats.avgdl)
        del terms
        lengths = self.embedder.count_tokens(texts)
        dense: list[Any] = [None] * len(texts)
        for batch in token_batches(lengths, self.batch_tokens, max_len=self.embedder.max_seq_length):
            vecs = self._embed([texts[i] for i in batch])
            for j, i in enumerate(batch):
                dense[i] = vecs[j]
            if progress:
                progress(stage="embed", chunks=len(batch), tokens=_tokens_text(lengths, batch))
        points = []
        for c, vec, sv in zip(chunks, dense, sparse, strict=True):
            payload = chunk_payload(doc, c, state.doc_hash)
            payload["kind"] = PART_KIND
            points.append(StoredPoint(c.chunk_id, vec.tolist(), sv, payload))
        state.n_chunks = part.cursor.index
        state.lex_len += lex
        state.next_char, state.heading = part.cursor.next_char, part.cursor.heading
        self.store.write_part(state, points)
        return len(points)


# Padded tokens per embedding call at most, unless the model's window is longer. Measured with the default
# model on OpenVINO (bench/embed_budget.py, bench/README.md §7): 4,096 tokens (8 texts of 512) embeds as fast
# as 16,384 (32 of 512) or faster — 8,678 vs 7,816 tokens/s, medians of 3 — and peaks 0.25 GB lower (the
# attention buffers grow with the call), which is what keeps a 50 MB file near 2 GB.
MAX_DEFAULT_BATCH_TOKENS = 4096


def default_batch_tokens(embedder: Embedder) -> int:
    """Padded tokens per embedding call when none is set: the embedder's batch size at its full window (the
    largest call the old count-based batching made), capped at ``MAX_DEFAULT_BATCH_TOKENS`` but never below
    one full-window text."""
    window = int(embedder.max_seq_length)
    by_count = max(1, int(getattr(embedder, "batch_size", 32))) * window
    return min(by_count, max(MAX_DEFAULT_BATCH_TOKENS, window))


def reembed(
    store: Store,
    embedder: Embedder,
    by_doc: dict[str, list[StoredPoint]],
    states: dict[str, DocState],
    *,
    batch_tokens: int | None = None,
    lex_lens: dict[str, int] | None = None,
    progress: ProgressFn | None = None,
) -> int:
    """``kret reindex``'s embedding step: new dense vectors for stored chunks, written document by
    document (with the stored lexical vectors and payloads) into ``store``, a version not yet live.

    Same order of work as indexing: all chunks sorted by token length, token-budget batches, a document
    written once all its chunks have their new vector. ``lex_lens`` replaces the recorded BM25 lengths
    (after ``relex``). Returns the number of chunks written.
    """
    budget = batch_tokens or default_batch_tokens(embedder)
    doc_ids, points = _in_order(by_doc)
    flat = [p for ps in points for p in ps]
    texts = [stored_chunk(p).embed_text for p in flat]
    owners = [o for o, ps in enumerate(points) for _ in ps]
    starts = np.cumsum([0] + [len(ps) for ps in points]).tolist()
    completion = Completion([len(ps) for ps in points])
    vectors: list[Any] = [None] * len(flat)
    lengths = embedder.count_tokens(texts)
    for batch in token_batches(lengths, budget, max_len=embedder.max_seq_length):
        dense = embedder.encode_passages([texts[i] for i in batch])
        for j, i in enumerate(batch):
            vectors[i] = dense[j]
        writes = []
        for o in completion.done(owners[i] for i in batch):
            a, b = starts[o], starts[o + 1]
            fresh = [
                StoredPoint(p.id, vectors[a + j].tolist(), p.sparse, p.payload)
                for j, p in enumerate(flat[a:b])
            ]
            writes.append(_rewrite(doc_ids[o], fresh, states, lex_lens))
        if writes:
            store.write_documents(writes)
        if progress:
            progress(
                stage="embed", advance=len(writes), chunks=len(batch), tokens=_tokens_text(lengths, batch)
            )
    return len(flat)


def stored_chunk(point: StoredPoint) -> Chunk:
    """The chunk a stored point was made from (its payload keeps text, title and heading)."""
    p = point.payload
    return Chunk(p["doc_id"], p["chunk_index"], p.get("text", ""), p.get("title", ""), p.get("heading", ""))


def relex(
    by_doc: dict[str, list[StoredPoint]], encoder: KiwiBM25Encoder, rule: str
) -> tuple[dict[str, list[StoredPoint]], dict[str, int]]:
    """New lexical vectors for stored chunks, indexed under ``rule`` (``indexer.document.LEXICAL_TEXT_RULES``):
    the same points with their dense vectors and payloads, and each document's new BM25 length.

    Kiwi only, no model: how ``kret reindex --lexical`` moves a collection to a new lexical text rule in
    minutes where re-embedding would take hours. All chunks are tokenised before any is weighted, so every
    vector is scored with the collection's final average length, as a fresh index would be.
    """
    doc_ids, points = _in_order(by_doc)
    flat = [p for ps in points for p in ps]
    terms = encoder.terms_batch([stored_chunk(p).lexical_text(rule) for p in flat])
    stats = _LexStats(len(terms), sum(len(t) for t in terms))
    sparse = encoder.encode_documents(terms, stats.avgdl)
    out: dict[str, list[StoredPoint]] = {}
    lex_lens: dict[str, int] = {}
    i = 0
    for d, ps in zip(doc_ids, points, strict=True):
        out[d] = [StoredPoint(p.id, p.dense, sparse[i + j], p.payload) for j, p in enumerate(ps)]
        lex_lens[d] = sum(len(terms[i + j]) for j in range(len(ps)))
        i += len(ps)
    return out, lex_lens


def copy_documents(
    store: Store,
    by_doc: dict[str, list[StoredPoint]],
    states: dict[str, DocState],
    *,
    lex_lens: dict[str, int] | None = None,
    docs_per_write: int = 256,
    progress: ProgressFn | None = None,
) -> int:
    """Write stored points as they are (vectors included) into ``store``, a document with its marker at a
    time; ``lex_lens`` replaces the recorded BM25 lengths (after ``relex``). Returns the chunks written."""
    doc_ids, points = _in_order(by_doc)
    written = 0
    for start in range(0, len(doc_ids), docs_per_write):
        writes = []
        for d, pts in zip(
            doc_ids[start : start + docs_per_write], points[start : start + docs_per_write], strict=True
        ):
            writes.append(_rewrite(d, pts, states, lex_lens))
            written += len(pts)
        store.write_documents(writes)
        if progress:
            progress(stage="embed", advance=len(writes))
    return written


def _in_order(by_doc: dict[str, list[StoredPoint]]) -> tuple[list[str], list[list[StoredPoint]]]:
    """Documents sorted by id, each with its chunks in order: the order every rebuild writes in."""
    doc_ids = sorted(by_doc)
    return doc_ids, [sorted(by_doc[d], key=lambda p: p.payload["chunk_index"]) for d in doc_ids]


def _rewrite(
    doc_id: str, points: list[StoredPoint], states: dict[str, DocState], lex_lens: dict[str, int] | None
) -> DocumentWrite:
    """A stored document written again into a new version: its recorded hash and path (from its chunks when
    the marker is missing), and its BM25 length — ``lex_lens``'s when ``relex`` changed it."""
    st = states.get(doc_id)
    lex_len = lex_lens[doc_id] if lex_lens is not None else (st.lex_len if st else 0)
    path = st.path if st else points[0].payload.get("path", "")
    return DocumentWrite(doc_id, st.doc_hash if st else "", path, points, lex_len=lex_len)
