"""DOCX (python-docx, imported lazily): paragraphs and tables in document order, Word headings as ``#`` lines."""

from __future__ import annotations

import io
import re
import zipfile
from typing import Any

from kret.errors import LoaderError
from kret.indexer.loaders.common import OLE_MAGIC as _OLE_MAGIC
from kret.indexer.loaders.common import reason as _reason

_DOCX_HEADING = re.compile(r"^heading\s*([1-9])$", re.IGNORECASE)


def extract(data: bytes) -> tuple[str, str, list[str]]:
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    if data.startswith(_OLE_MAGIC):
        raise LoaderError("not a DOCX: password-protected or legacy .doc Word file")
    try:
        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, PackageNotFoundError, KeyError) as exc:
        raise LoaderError(f"corrupt DOCX: {_reason(exc)}") from exc

    blocks: list[str] = []
    first_heading = ""
    for item in document.iter_inner_content():
        if hasattr(item, "rows"):
            blocks.append(_docx_table(item))
            continue
        text = item.text.strip()
        if not text:
            continue
        level = _docx_heading_level(item)
        if level:
            text = " ".join(text.split())
            first_heading = first_heading or text
            blocks.append("#" * level + " " + text)
        else:
            blocks.append(text)
    title = ""
    try:
        title = document.core_properties.title or ""
    except Exception:  # a broken core.xml only costs the title
        title = ""
    return title or first_heading, "\n\n".join(blocks), []


def _docx_heading_level(paragraph: Any) -> int:
    try:
        name = (paragraph.style.name or "") if paragraph.style is not None else ""
    except Exception:
        return 0
    if name.lower() == "title":
        return 1
    match = _DOCX_HEADING.match(name.strip())
    return int(match.group(1)) if match else 0


def _docx_table(table: Any) -> str:
    """One line per row, cells separated by `` | ``; merged cells (repeated by python-docx) once."""
    lines: list[str] = []
    for row in table.rows:
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            if cell._tc is previous:
                continue
            previous = cell._tc
            parts: list[str] = []
            for inner in cell.iter_inner_content():
                parts.append(_docx_table(inner) if hasattr(inner, "rows") else inner.text)
            cells.append(" ".join(" ".join(parts).split()))
        if any(cells):
            lines.append(" | ".join(cells))
    return "\n".join(lines)
