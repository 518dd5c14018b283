"""Small helpers every format module uses: a one-line reason for an exception, a cleaned title, and the
OLE signature that both DOCX (to refuse legacy .doc files) and HWP 5.0 check.
"""

from __future__ import annotations

from kret.indexer.clean import clean_text

_MAX_REASON = 200

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def reason(exc: BaseException) -> str:
    """``"ValueError: first line of the message"``, at most 200 characters: one row of a summary table."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text[:_MAX_REASON]


def clean_title(title: str | None) -> str:
    if not title:
        return ""
    return " ".join(clean_text(str(title)).split())
