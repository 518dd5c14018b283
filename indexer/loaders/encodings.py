"""Bytes to text for the text-based formats (txt, md, html, jsonl), favouring the encodings Korean files
really come in: BOMs, UTF-8, a declared charset, cp949, UTF-16 without a BOM; a guess only last.
"""

from __future__ import annotations

import codecs
import re

from kret.errors import LoaderError

_UTF8_BOM = codecs.BOM_UTF8
UNICODE_BOMS = (
    codecs.BOM_UTF32_LE,
    codecs.BOM_UTF32_BE,
    codecs.BOM_UTF16_LE,
    codecs.BOM_UTF16_BE,
    _UTF8_BOM,
)
_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]+)""", re.IGNORECASE)


def decode_text(data: bytes, declared: str | None = None, problems: list[str] | None = None) -> str:
    """Decode the bytes of a text file, favouring the encodings Korean files actually come in.

    Order: a BOM wins; then strict UTF-8 (it practically never validates by accident); then an encoding
    the file itself declares (HTML ``<meta charset>``); then cp949, the superset of EUC-KR that legacy
    Korean Windows files use; only then charset-normalizer's guess. Latin-1 is never a blind fallback
    because it "succeeds" on any bytes and would store Korean as mojibake.

    A file whose byte-order mark promises an encoding its bytes then break is decoded with U+FFFD in
    place of the bad bytes; ``problems`` (when given) gets a note saying so, for the indexing summary.
    """
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)) and len(data) % 4 == 0:
        return _decode_or_fail(data, "utf-32", problems)
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _decode_or_fail(data, "utf-16", problems)
    if data.startswith(_UTF8_BOM):
        return _decode_or_fail(data[len(_UTF8_BOM) :], "utf-8", problems)
    if b"\x00" in data[:8192]:
        text = utf16_without_bom(data)
        if text is None:
            raise LoaderError("binary file, not text")
        return text
    candidates = ["utf-8"]
    if declared:
        candidates.append(declared)
    candidates.append("cp949")
    for encoding in candidates:
        try:
            return data.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            continue
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise LoaderError("cannot determine the text encoding")
    return str(best)


# Code point ranges that real UTF-16 text is made of: Latin (ASCII, Latin-1, Extended-A), Greek and
# Cyrillic, general punctuation, CJK symbols, Hangul jamo and syllables, kana, CJK ideographs, full-width
# forms. Binary data read as UTF-16 lands mostly elsewhere.
_TEXT_RANGES = (
    (0x20, 0x17F), (0x370, 0x4FF), (0x1100, 0x11FF), (0x2000, 0x206F), (0x3000, 0x30FF), (0x3130, 0x318F),
    (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xFF00, 0xFFEF),
)  # fmt: skip


def utf16_without_bom(data: bytes) -> str | None:
    """Text of a UTF-16 file written without a byte-order mark, or None when the bytes are not that.

    Windows tools write such files. Their NUL bytes are the high (or low) halves of ASCII characters, so
    they sit almost all on odd offsets (little-endian) or on even ones (big-endian); binary data scatters
    NULs over both. A candidate must also decode strictly and read as text: no control characters besides
    whitespace, and nearly every character from the scripts above.
    """
    sample = data[: min(len(data), 65536) & ~1]
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    if len(data) % 2 or not (even or odd):
        return None
    if odd >= 4 * max(even, 1) or (odd and not even):
        encoding = "utf-16-le"
    elif even >= 4 * max(odd, 1) or (even and not odd):
        encoding = "utf-16-be"
    else:
        return None
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        return None
    plausible = 0
    sample_text = text[:32768]
    for ch in sample_text:
        code = ord(ch)
        if code < 0x20 and ch not in "\t\n\r\f":
            return None
        if code < 0x20 or any(lo <= code <= hi for lo, hi in _TEXT_RANGES):
            plausible += 1
    return text if plausible >= 0.95 * len(sample_text) else None


def _decode_or_fail(data: bytes, encoding: str, problems: list[str] | None = None) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        text = data.decode(encoding, errors="replace")
        if problems is not None:
            lost = text.count("\ufffd") - data.decode(encoding, errors="ignore").count("\ufffd")
            problems.append(f"undecodable bytes: {lost} invalid {encoding} sequence(s) replaced by U+FFFD")
        return text


def html_declared_encoding(data: bytes) -> str | None:
    """The charset a page declares in its first bytes, mapped to the codec browsers really use."""
    match = _META_CHARSET.search(data[:4096])
    if not match:
        return None
    label = match.group(1).decode("ascii", errors="ignore").strip().lower()
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    # As in browsers (WHATWG encoding standard): pages labelled EUC-KR are really cp949, pages labelled
    # Latin-1 or ASCII are really windows-1252.
    if name in ("euc_kr", "cp949"):
        return "cp949"
    if name in ("latin-1", "iso8859-1", "ascii"):
        return "cp1252"
    if name.startswith("utf-16"):  # a BOM-less page cannot be UTF-16 if we could read its meta tag
        return None
    return name
