"""A training query and its positive, the counts of where input rows went, and the text forms they match on."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from kret.indexer.clean import clean_text


@dataclass(frozen=True)
class TrainQuery:
    """One training query and its positive in the collection.

    ``positive_doc_id`` is the collection document the query is about (``None`` only before resolution).
    ``positive_chunk_id`` pins the positive to one chunk; without it mining uses the document's chunk that
    the model scores highest for the query. ``positive_text``, when set, is the passage trained on instead
    of the stored chunk: inverse-cloze pairs need it, because the stored chunk contains the query sentence
    verbatim and would teach copying.
    """

    query: str
    positive_doc_id: str | None
    positive_text: str | None
    source: str
    qid: str = ""
    positive_chunk_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class QueryStats:
    """Where the input rows went; ``counts`` keys are stable for reports and lineage."""

    source: str
    counts: dict[str, int] = field(default_factory=dict)
    file_sha256: str | None = None

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "file_sha256": self.file_sha256, "counts": dict(self.counts)}


def normalize_text(text: str) -> str:
    """Same cleaning as the loaders, whitespace runs as one space: equal-looking queries compare equal."""
    return " ".join(clean_text(unicodedata.normalize("NFC", text or "")).split())


def match_key(text: str) -> str:
    """The form positives are matched on: cleaned, *all* whitespace removed.

    Removing rather than collapsing whitespace is deliberate: the chunker cuts over-long sentences at token
    boundaries, sometimes inside a word, so a document rebuilt from its chunks can differ from the original
    text only by a line break inside a word.
    """
    return "".join(clean_text(unicodedata.normalize("NFC", text or "")).split())


def queries_sha256(queries: Iterable[TrainQuery]) -> str:
    """Hash of the resolved query list, so a lineage names exactly what was trained and held out."""
    h = hashlib.sha256()
    for q in queries:
        h.update(json.dumps(q.as_dict(), ensure_ascii=False, sort_keys=True).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()
