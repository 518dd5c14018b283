"""PDF: the text layer of every page (pypdf, imported lazily); a scanned PDF has none and says so."""

from __future__ import annotations

import io
import logging

from kret.errors import LoaderError
from kret.indexer.clean import clean_text
from kret.indexer.loaders.common import reason as _reason


def _quiet_pypdf() -> None:
    """Keep pypdf's notes on recoverable damage ("EOF marker not found") off the user's terminal.

    pypdf reports them through ``logging``; with no handler configured anywhere, Python's last-resort
    handler prints them on stderr, in the middle of the progress bars. A NullHandler on pypdf's logger
    stops that while records still propagate to whatever logging the application sets up.
    """
    logger = logging.getLogger("pypdf")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())


def extract(data: bytes) -> tuple[str, str, list[str]]:
    from pypdf import PdfReader

    _quiet_pypdf()

    try:
        reader = PdfReader(io.BytesIO(data))
    except Exception as exc:  # pypdf raises PdfReadError and many others on garbage input
        raise LoaderError(f"corrupt PDF: {_reason(exc)}") from exc
    if reader.is_encrypted:
        try:
            opened = reader.decrypt("")  # many "encrypted" PDFs only restrict printing/copying
        except Exception as exc:  # e.g. AES without a crypto library installed
            raise LoaderError(f"encrypted PDF cannot be opened: {_reason(exc)}") from exc
        if not opened:
            raise LoaderError("encrypted PDF: a password is required")
    try:
        pages = reader.pages
        n_pages = len(pages)
    except Exception as exc:
        raise LoaderError(f"corrupt PDF: {_reason(exc)}") from exc

    problems: list[str] = []
    texts: list[str] = []
    for number in range(n_pages):
        try:
            texts.append(pages[number].extract_text() or "")
        except Exception as exc:  # one broken page should not cost the others
            problems.append(f"page {number + 1}: {_reason(exc)}")
    if n_pages and len(problems) == n_pages:
        raise LoaderError(f"corrupt PDF: no page could be read ({problems[0]})")
    text = "\n\n".join(texts)
    if n_pages and not clean_text(text):
        problems.append("no extractable text (a scanned PDF needs OCR first)")

    title = ""
    try:
        if reader.metadata is not None and reader.metadata.title:
            title = str(reader.metadata.title)
    except Exception:  # a broken info dictionary only costs the title
        title = ""
    return title, text, problems
