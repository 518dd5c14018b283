"""The collection as the trainer sees it: every chunk of one version, grouped by document, read once."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kret.indexer.document import Chunk
from kret.trainer.queries.records import match_key


@dataclass
class ChunkRecord:
    id: str
    doc_id: str
    chunk_index: int
    text: str
    title: str = ""
    heading: str = ""
    path: str = ""
    meta: dict[str, Any] = field(default_factory=dict)  # the document's metadata (JSONL extra fields...)

    @property
    def embed_text(self) -> str:
        """Exactly what the engine embedded for this chunk (title/heading in front), so training matches."""
        return Chunk(
            doc_id=self.doc_id,
            chunk_index=self.chunk_index,
            text=self.text,
            title=self.title,
            heading=self.heading,
        ).embed_text


class CollectionCatalog:
    """Every chunk of one collection version, grouped by document, read once with ``scroll_chunks``.

    Vectors are not kept here (a big collection's vectors may not fit in memory twice); callers that need
    some of them stream the store again with ``vectors_for``.
    """

    def __init__(self, chunks: Iterable[ChunkRecord], store: Any = None) -> None:
        self.store = store
        self.chunks: dict[str, ChunkRecord] = {}
        by_doc: dict[str, list[ChunkRecord]] = defaultdict(list)
        for c in chunks:
            self.chunks[c.id] = c
            by_doc[c.doc_id].append(c)
        self.by_doc: dict[str, list[ChunkRecord]] = {
            d: sorted(cs, key=lambda c: c.chunk_index) for d, cs in sorted(by_doc.items())
        }
        self.by_path: dict[str, list[str]] = defaultdict(list)
        for doc_id, cs in self.by_doc.items():
            if cs[0].path:
                self.by_path[cs[0].path].append(doc_id)
        self._doc_plain: dict[str, str] | None = None
        self._by_id_tail: dict[str, list[str]] | None = None

    def docs_with_id_tail(self, value: str) -> list[str]:
        """Documents whose id ends with ``value`` at a ``/`` or ``#`` boundary.

        Document ids carry the indexed path (``home/me/corpus/data.jsonl#3228``), but a user's query file
        names a document the way they know it: the JSONL row id (``3228``), the file (``data.jsonl#3228``)
        or an absolute path. Callers accept a tail only when exactly one document has it.
        """
        if self._by_id_tail is None:
            tails: dict[str, list[str]] = defaultdict(list)
            for doc_id in self.by_doc:
                for pos, ch in enumerate(doc_id):
                    if ch in "/#":
                        tails[doc_id[pos + 1 :]].append(doc_id)
            self._by_id_tail = tails
        value = value.lstrip("/")
        return [value] if value in self.by_doc else list(self._by_id_tail.get(value, ()))

    @classmethod
    def from_store(cls, store: Any) -> CollectionCatalog:
        records = []
        for p in store.scroll_chunks(with_vectors=False):
            pl = p.payload
            records.append(
                ChunkRecord(
                    id=str(p.id),
                    doc_id=str(pl.get("doc_id", "")),
                    chunk_index=int(pl.get("chunk_index", 0)),
                    text=str(pl.get("text", "")),
                    title=str(pl.get("title", "") or ""),
                    heading=str(pl.get("heading", "") or ""),
                    path=str(pl.get("path", "") or ""),
                    meta=dict(pl.get("meta") or {}),
                )
            )
        return cls(records, store)

    def __len__(self) -> int:
        return len(self.chunks)

    @property
    def doc_ids(self) -> list[str]:
        return list(self.by_doc)

    def doc_title(self, doc_id: str) -> str:
        return self.by_doc[doc_id][0].title

    def doc_text(self, doc_id: str, *, headings: bool = True) -> str:
        """The document rebuilt from its chunks in order, with the chunk overlap removed.

        With ``headings`` each section's heading is written back as a ``# heading`` line, which the chunker
        reads as a section break for any source type, so re-indexing the text gives the same sections.
        """
        out = ""
        prev: ChunkRecord | None = None
        for c in self.by_doc[doc_id]:
            text = c.text
            new_section = prev is None or c.heading != prev.heading
            if new_section:
                head = f"# {c.heading}\n" if headings and c.heading else ""
                out += ("\n\n" if out else "") + head + text
            else:
                assert prev is not None
                cut = _overlap(prev.text, text)
                out += text[cut:] if cut else "\n" + text
            prev = c
        return out

    def plain_doc_texts(self) -> dict[str, str]:
        """Match keys of the document texts (no heading markup), for exact whole-document matching."""
        if self._doc_plain is None:
            self._doc_plain = {d: match_key(self.doc_text(d, headings=False)) for d in self.by_doc}
        return self._doc_plain

    def vectors_for(self, ids: Iterable[str]) -> dict[str, np.ndarray]:
        """Stored dense vectors (unit length: the collection uses cosine) of the wanted chunk ids."""
        wanted = set(ids)
        out: dict[str, np.ndarray] = {}
        if not wanted or self.store is None:
            return out
        for p in self.store.scroll_chunks(with_vectors=True):
            pid = str(p.id)
            if pid in wanted and p.dense is not None:
                out[pid] = _unit(np.asarray(p.dense, dtype=np.float32))
                if len(out) == len(wanted):
                    break
        return out


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def _overlap(prev: str, nxt: str, probe: int = 8) -> int:
    """Length of the longest suffix of ``prev`` that is a prefix of ``nxt`` (the chunker's overlap).

    The chunker carries whole trailing units (paragraphs, sentences, hard-cut pieces) into the next chunk,
    so a real overlap is at least a short sentence long; shorter coincidences (``…하야시 다`` + ``다스가``)
    are not overlaps, hence the probe of a few characters.
    """
    if not prev or not nxt:
        return 0
    head = nxt[: min(probe, len(nxt))]
    start = prev.find(head)
    while start != -1:
        tail = prev[start:]
        if len(tail) >= len(head) and nxt.startswith(tail):
            return len(tail)
        start = prev.find(head, start + 1)
    return 0
