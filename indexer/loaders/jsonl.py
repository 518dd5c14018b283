"""JSONL (``.jsonl``): one Document per row (BEIR, Pyserini and similar layouts); a bad row costs that row."""

from __future__ import annotations

import json
import math
import unicodedata
from typing import Any

from kret.errors import LoaderError
from kret.indexer.clean import clean_text
from kret.indexer.document import Document
from kret.indexer.loaders.common import clean_title as _clean_title
from kret.indexer.loaders.encodings import UNICODE_BOMS, decode_text, utf16_without_bom

# JSONL field names, in order of preference. BEIR uses ``_id``/``title``/``text``; Pyserini uses
# ``id``/``contents``; others use ``body`` or ``content``.
JSONL_TEXT_KEYS = ("text", "contents", "body", "content")
JSONL_ID_KEYS = ("_id", "id", "doc_id")
_JSONL_RESERVED = frozenset({*JSONL_TEXT_KEYS, *JSONL_ID_KEYS, "title", "metadata"})


def load_rows(data: bytes, rel: str, base: dict[str, Any]) -> tuple[list[Document], list[str]]:
    """One Document per row; bad rows are reported and skipped unless no row at all is usable."""
    problems: list[str] = []
    text, binary_lines = _jsonl_decode(data, problems)
    docs: list[Document] = []
    seen: dict[str, int] = {}
    rows = 0
    failures = 0
    # Split on "\n" only: str.splitlines() also splits on U+2028, \x1c... which JSON strings may contain.
    for number, line in enumerate(text.split("\n"), start=1):
        if number in binary_lines:
            rows += 1
            failures += 1
            problems.append(f"line {number}: NUL bytes (binary data)")
            continue
        line = line.strip()
        if not line:
            continue
        rows += 1
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            problems.append(f"line {number}: invalid JSON")
            failures += 1
            continue
        if not isinstance(row, dict):
            problems.append(f"line {number}: not a JSON object")
            failures += 1
            continue
        text_key = next((k for k in JSONL_TEXT_KEYS if k in row), None)
        if text_key is None:
            problems.append(f"line {number}: no text field ({'/'.join(JSONL_TEXT_KEYS)})")
            failures += 1
            continue
        body = row[text_key]
        if body is None:
            body = ""
        if not isinstance(body, str):
            problems.append(f"line {number}: field {text_key!r} is not a string")
            failures += 1
            continue
        source_id = _jsonl_row_id(row)
        row_id = source_id if source_id is not None else str(number)
        if row_id in seen:
            problems.append(f"line {number}: duplicate id {row_id!r} (first on line {seen[row_id]}), skipped")
            continue
        seen[row_id] = number
        body = clean_text(body)
        if not body:
            problems.append(f"line {number}: empty text, skipped")
            continue
        title = row.get("title")
        docs.append(
            Document(
                doc_id=f"{rel}#{row_id}",
                text=body,
                title=_clean_title(title if isinstance(title, str) else ""),
                metadata=_jsonl_metadata(row, source_id),
                **base,
            )
        )
    if not docs and failures and failures == rows:
        first = next(p for p in problems if p.startswith("line "))
        raise LoaderError(f"no usable row in JSONL file ({first})")
    return docs, problems


def _jsonl_decode(data: bytes, problems: list[str]) -> tuple[str, set[int]]:
    """The file's text, and the numbers of lines that hold NUL bytes (blanked in the text).

    A NUL byte makes a whole text file "binary", but in JSONL it costs only its line: a crashed writer or a
    bad export leaves one broken row in an otherwise good corpus. UTF-16/32 files (with or without a
    byte-order mark) hold NULs in every ASCII character and are decoded whole.
    """
    if b"\x00" not in data or data.startswith(UNICODE_BOMS) or utf16_without_bom(data) is not None:
        return decode_text(data, problems=problems), set()
    lines = data.split(b"\n")
    binary = {number for number, line in enumerate(lines, start=1) if b"\x00" in line}
    kept = b"\n".join(b"" if number in binary else line for number, line in enumerate(lines, start=1))
    return decode_text(kept, problems=problems), binary


def _jsonl_row_id(row: dict[str, Any]) -> str | None:
    for key in JSONL_ID_KEYS:
        value = row.get(key)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (str, int)):
            value = unicodedata.normalize("NFC", str(value)).strip()
            if value:
                return value
    return None


def _is_scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)  # NaN/Infinity are valid for json.loads but not for payload JSON
    return value is None or isinstance(value, (str, int, bool))


def _jsonl_metadata(row: dict[str, Any], source_id: str | None) -> dict[str, Any]:
    """The row's other scalar fields (what a user filters on); a nested ``metadata`` object is merged."""
    meta: dict[str, Any] = {}
    nested = row.get("metadata")
    if isinstance(nested, dict):
        meta.update({str(k): v for k, v in nested.items() if _is_scalar(v)})
    meta.update({k: v for k, v in row.items() if k not in _JSONL_RESERVED and _is_scalar(v)})
    if source_id is not None:
        meta["source_id"] = source_id
    return meta
