"""The two records that flow from files to the engine: a loaded ``Document`` and its ``Chunk``s.

A document's identity (``doc_id``) is stable across runs (relative path, or ``path#id`` for a JSONL row) so
that re-indexing can tell "unchanged", "changed" and "gone" apart; a chunk's id is derived from the
document id and the chunk's position, so the same input always yields the same point ids.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

#: Which text of a chunk the lexical (BM25) branch indexes. Recorded per collection (manifest
#: ``sparse.text``) so that documents added later are indexed like the ones already there; collections made
#: before the rule was recorded used ``AS_EMBEDDED``.
TITLE_ALWAYS = "title-always"
AS_EMBEDDED = "as-embedded"
LEXICAL_TEXT_RULES = (TITLE_ALWAYS, AS_EMBEDDED)  # the ``lexical_text`` setting; its default: TITLE_ALWAYS

# Fixed namespace so that chunk ids are identical across machines and runs.
KRET_NAMESPACE = uuid.UUID("6f1c1d0e-4b7a-5c55-9b1e-6b72657421aa")


@dataclass
class Document:
    """One logical document as read from a file (a JSONL file yields many)."""

    doc_id: str
    text: str
    path: str
    source_type: str
    title: str = ""
    mtime: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        """Hash of what gets indexed: a change of title, text or metadata means re-embedding."""
        h = hashlib.sha256()
        for part in (self.title, "\x00", self.text, "\x00", repr(sorted(self.metadata.items()))):
            h.update(part.encode("utf-8", "surrogatepass"))
        return h.hexdigest()[:32]


@dataclass
class Chunk:
    """A passage of a document, sized for the embedding model, with where it came from."""

    doc_id: str
    chunk_index: int
    text: str
    title: str = ""
    heading: str = ""
    start_char: int = 0
    end_char: int = 0

    @property
    def chunk_id(self) -> str:
        return chunk_point_id(self.doc_id, self.chunk_index)

    @property
    def embed_text(self) -> str:
        """What the embedding model sees: title (and section heading) in front of the text, the BEIR
        convention, unless the text already begins with them."""
        head = " ".join(p for p in self._head() if p not in self.text[: len(p) + 8])
        return f"{head} {self.text}".strip() if head else self.text

    @property
    def titled_text(self) -> str:
        """Title (and heading) always in front, even when the text begins with them: BEIR's exact
        ``title + " " + text``. What the lexical branch indexes by default (``TITLE_ALWAYS``): a repeated
        title doubles its terms' frequency, and BM25 ranks better for it (bench/README.md §2g)."""
        head = " ".join(self._head())
        return f"{head} {self.text}".strip() if head else self.text

    def _head(self) -> list[str]:
        return [p for p in [self.title] + ([self.heading] if self.heading != self.title else []) if p]

    def lexical_text(self, rule: str) -> str:
        """The text BM25 indexes under a collection's recorded rule (``LEXICAL_TEXT_RULES``)."""
        if rule == TITLE_ALWAYS:
            return self.titled_text
        if rule == AS_EMBEDDED:
            return self.embed_text
        raise ValueError(f"unknown lexical text rule {rule!r}; known: {', '.join(LEXICAL_TEXT_RULES)}")


def chunk_point_id(doc_id: str, chunk_index: int) -> str:
    return str(uuid.uuid5(KRET_NAMESPACE, f"chunk:{doc_id}:{chunk_index}"))


def doc_point_id(doc_id: str) -> str:
    return str(uuid.uuid5(KRET_NAMESPACE, f"doc:{doc_id}"))
