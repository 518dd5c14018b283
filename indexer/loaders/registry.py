"""The file formats kret reads: one entry per format, and everything else derived from it.

Adding a format is one module under ``indexer/loaders/`` with an ``extract(data) -> (title, text,
problems)`` function (or a ``load_rows`` for files that hold many documents, like JSONL) plus one
``Format`` entry below. Discovery (``SUPPORTED_SUFFIXES``), the ``source_type`` stored on every chunk,
the file-type filter of ``kret search --type`` and the CLI's help text all read this table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kret.indexer.document import Document
from kret.indexer.loaders import docx, html, hwp, hwpx, jsonl, markdown, pdf, text

Extract = Callable[[bytes], tuple[str, str, list[str]]]
LoadRows = Callable[[bytes, str, dict[str, Any]], tuple[list[Document], list[str]]]


@dataclass(frozen=True)
class Format:
    """One file format: the ``source_type`` its documents carry, the suffixes that select it, and its reader.

    ``extract`` turns a file's bytes into one document's title, text and non-fatal problems;
    ``load_rows`` (for container formats) turns them into many Documents. ``no_text`` says why a file that
    was read without error gave no document, when the reader itself said nothing more precise.
    """

    source_type: str
    suffixes: tuple[str, ...]
    extract: Extract | None = None
    load_rows: LoadRows | None = None
    no_text: str = "no text"


FORMATS: tuple[Format, ...] = (
    Format("txt", (".txt",), text.extract, no_text="no text: only whitespace or control characters"),
    Format("md", (".md", ".markdown"), markdown.extract, no_text="no text: only markup"),
    Format("html", (".html", ".htm"), html.extract, no_text="no text: only markup or script"),
    Format("pdf", (".pdf",), pdf.extract),
    Format("docx", (".docx",), docx.extract),
    Format("hwp", (".hwp",), hwp.extract),
    Format("hwpx", (".hwpx",), hwpx.extract),
    Format("jsonl", (".jsonl",), load_rows=jsonl.load_rows, no_text="no rows (only blank lines)"),
)

BY_SUFFIX: dict[str, Format] = {suffix: f for f in FORMATS for suffix in f.suffixes}
BY_TYPE: dict[str, Format] = {f.source_type: f for f in FORMATS}
SUPPORTED_SUFFIXES: frozenset[str] = frozenset(BY_SUFFIX)
#: source_type -> extract function; a plain dict so a test can swap one reader (``monkeypatch.setitem``).
EXTRACTORS: dict[str, Extract] = {f.source_type: f.extract for f in FORMATS if f.extract is not None}


def source_types() -> list[str]:
    """The ``source_type`` values documents can carry (what a file-type filter may name)."""
    return [f.source_type for f in FORMATS]


def canonical_source_type(name: str) -> str | None:
    """``md`` for ``md``/``.MD``/``markdown``; None for a name that is no supported type."""
    key = name.strip().lower()
    fmt = BY_SUFFIX.get(key if key.startswith(".") else f".{key}") or BY_TYPE.get(key.lstrip("."))
    return fmt.source_type if fmt else None
