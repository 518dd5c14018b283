"""Embedding and storing documents: the engine half of ``kret index``.

Crash consistency: each batch of documents is written as one delete (their old chunks) followed by one
upsert (new chunks + one marker per document carrying the content hash). Qdrant applies an operation whole,
so after a kill a document is either fully there with its hash, or absent, and the next run redoes it.

BM25 needs the average chunk length. It is rebuilt from the per-document term counts on the markers at the
start of every run (never drifts), then updated wave by wave: all chunks of a wave are tokenised first
(Kiwi is ~30x faster than the encoder), so their own lengths count in the average they are scored with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kret.engine.collection import Collection
from kret.engine.embedder import Embedder
from kret.engine.sparse import KiwiBM25Encoder
from kret.engine.store import DocState, DocumentWrite
from kret.engine.types import StoredPoint
from kret.indexer.chunker import Chunker
from kret.indexer.document import Chunk, Document

ProgressFn = Callable[..., None]
WAVE_DOCS = 5000


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


def chunk_payload(doc: Document, chunk: Chunk) -> dict[str, Any]:
    return {
        "kind": "chunk",
        "doc_id": doc.doc_id,
        "chunk_index": chunk.chunk_index,
        "text": chunk.text,
        "title": chunk.title,
        "heading": chunk.heading,
        "path": doc.path,
        "source_type": doc.source_type,
        "doc_hash": doc.content_hash,
        "mtime": doc.mtime,
        "meta": doc.metadata,
    }


class Ingestor:
    def __init__(
        self,
        collection: Collection,
        embedder: Embedder,
        encoder: KiwiBM25Encoder,
        chunker: Chunker,
        *,
        batch_chunks: int = 128,
    ) -> None:
        self.collection = collection
        self.embedder = embedder
        self.encoder = encoder
        self.chunker = chunker
        self.batch_chunks = batch_chunks

    def write(
        self,
        docs: Sequence[Document],
        states: dict[str, DocState],
        progress: ProgressFn | None = None,
    ) -> int:
        """Embed and store ``docs`` (new or changed); returns the number of chunks written."""
        replacing = {d.doc_id for d in docs}
        kept = [s for s in states.values() if s.doc_id not in replacing]
        n_chunks = sum(s.n_chunks for s in kept)
        total_len = sum(s.lex_len for s in kept)
        written = 0
        for w in range(0, len(docs), WAVE_DOCS):
            wave = docs[w : w + WAVE_DOCS]
            chunked = [(d, self.chunker.chunk(d)) for d in wave]
            texts = [c.embed_text for _, cs in chunked for c in cs]
            terms = self.encoder.terms_batch(texts)
            n_chunks += len(texts)
            total_len += sum(len(t) for t in terms)
            avgdl = max(total_len / max(n_chunks, 1), 1.0)
            t_iter = iter(terms)
            batch: list[tuple[Document, list[Chunk], list[list[str]]]] = []
            size = 0
            for doc, cs in chunked:
                batch.append((doc, cs, [next(t_iter) for _ in cs]))
                size += len(cs)
                if size >= self.batch_chunks:
                    written += self._write_batch(batch, avgdl, progress)
                    batch, size = [], 0
            if batch:
                written += self._write_batch(batch, avgdl, progress)
        return written

    def _write_batch(self, batch, avgdl: float, progress: ProgressFn | None) -> int:
        texts = [c.embed_text for _, cs, _ in batch for c in cs]
        dense = self.embedder.encode_passages(texts)
        term_lists = [t for _, _, ts in batch for t in ts]
        sparse = self.encoder.encode_documents(term_lists, avgdl)
        writes = []
        i = 0
        for doc, cs, ts in batch:
            points = []
            for c in cs:
                points.append(StoredPoint(c.chunk_id, dense[i].tolist(), sparse[i], chunk_payload(doc, c)))
                i += 1
            writes.append(
                DocumentWrite(doc.doc_id, doc.content_hash, doc.path, points, lex_len=sum(len(t) for t in ts))
            )
        self.collection.store.write_documents(writes)
        if progress:
            progress(stage="embed", advance=len(batch), chunks=len(texts))
        return len(texts)
