"""Normalise extracted text before it is chunked, embedded and tokenised.

Every loader funnels its text through :func:`clean_text` so that the same visible text always becomes the
same string: Korean typed on macOS arrives as decomposed jamo (NFD) and would never match a query typed
elsewhere (NFC); PDFs and word processors leak control characters, non-breaking and ideographic spaces;
Windows files bring CRLF. Blank lines survive (collapsed to one) because the chunker splits paragraphs
on them.
"""

from __future__ import annotations

import re
import unicodedata

# Characters that end a line in some producer's mind (form feed between PDF pages, vertical tab in Word
# exports, Unicode line/paragraph separators): turned into newlines rather than deleted, so that the words
# on either side do not run together.
_LINE_BREAKS = {
    "\x0b": "\n",
    "\x0c": "\n\n",
    "\x1c": "\n",
    "\x1d": "\n",
    "\x1e": "\n",
    "\x85": "\n",
    "\u2028": "\n",
    "\u2029": "\n\n",
}

# Spaces that look like a space but do not match " " (NBSP from HTML/Word, the ideographic space that
# Korean and CJK documents use for alignment, the typographic fixed-width spaces).
_SPACES = "\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"

# Invisible characters with no meaning for retrieval that would otherwise split or glue tokens.
# ZWJ/ZWNJ are kept: they are part of emoji sequences and some scripts' spelling.
_INVISIBLE = "\u00ad\u180e\u200b\u2060\ufeff\ufffe\uffff"


def _build_table() -> dict[int, str | None]:
    table: dict[int, str | None] = {}
    for code in (*range(0x00, 0x20), *range(0x7F, 0xA0)):
        if chr(code) not in "\n\t":
            table[code] = None
    for ch, repl in _LINE_BREAKS.items():
        table[ord(ch)] = repl
    for ch in _SPACES:
        table[ord(ch)] = " "
    for ch in _INVISIBLE:
        table[ord(ch)] = None
    return table


_TABLE = _build_table()
_SURROGATES = re.compile("[\ud800-\udfff]")
_SPACE_RUN = re.compile(" {2,}")
_TRAILING = re.compile("[ \t]+$", re.MULTILINE)
_BLANK_RUN = re.compile("\n{3,}")


def clean_text(text: str) -> str:
    """Return ``text`` normalised so that equal-looking text compares equal and paragraphs stay apart.

    Two or more blank lines in a row become one blank line: one is all the chunker needs to see a
    paragraph break, more is layout noise.
    """
    if not text:
        return ""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.translate(_TABLE)
    # Lone surrogates come from broken UTF-16 (HWP, some PDFs) and cannot be encoded as UTF-8 later.
    text = _SURROGATES.sub("", text)
    text = unicodedata.normalize("NFC", text)
    text = _SPACE_RUN.sub(" ", text)
    text = _TRAILING.sub("", text)
    text = _BLANK_RUN.sub("\n\n", text)
    return text.strip()
