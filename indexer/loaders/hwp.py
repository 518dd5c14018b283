"""HWP 5.0 (binary: an OLE compound file of zlib-compressed record streams), read without Hancom software."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import Any

from kret.errors import LoaderError
from kret.indexer.loaders.common import OLE_MAGIC as _OLE_MAGIC
from kret.indexer.loaders.common import reason as _reason
from kret.indexer.loaders.hwpx import extract as extract_hwpx

HWPTAG_PARA_TEXT = 67  # HWPTAG_BEGIN (16) + 51
_HWP_SIGNATURE = b"HWP Document File"
_HWP_FLAG_COMPRESSED = 0x1
_HWP_FLAG_PASSWORD = 0x2
_HWP_FLAG_DISTRIBUTION = 0x4
# Control characters that occupy 8 UTF-16 units (the code, 6 units of parameters, the code again).
_HWP_WIDE_CONTROLS = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23})
_HWP_CHAR_CONTROLS = {9: "\t", 10: "\n", 13: "\n", 24: "-", 30: " ", 31: " "}
_HWP_MAX_SECTION = 512 * 1024 * 1024


def iter_hwp_records(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(tag_id, level, payload)`` for each record of a decompressed HWP stream.

    Header: a little-endian u32 with tag id in bits 0-9, level in 10-19 and size in 20-31; size 0xFFF
    means the real size follows as another u32.
    """
    pos = 0
    end = len(data)
    while pos < end:
        if pos + 4 > end:
            raise LoaderError(f"corrupt HWP: truncated record header at byte {pos}")
        (header,) = struct.unpack_from("<I", data, pos)
        pos += 4
        tag_id = header & 0x3FF
        level = (header >> 10) & 0x3FF
        size = (header >> 20) & 0xFFF
        if size == 0xFFF:
            if pos + 4 > end:
                raise LoaderError(f"corrupt HWP: truncated record header at byte {pos}")
            (size,) = struct.unpack_from("<I", data, pos)
            pos += 4
        if pos + size > end:
            raise LoaderError(f"corrupt HWP: record at byte {pos} runs past the end of the stream")
        yield tag_id, level, data[pos : pos + size]
        pos += size


def decode_hwp_para_text(payload: bytes) -> str:
    """Text of one HWPTAG_PARA_TEXT record with HWP's in-band control characters removed.

    Codes below 32 are controls: the "extended" and "inline" ones (tables, fields, tabs...) carry 7
    more units of parameters that must be skipped, or their parameter bytes would show up as garbage
    characters; the rest are one unit long.
    """
    n_units = len(payload) // 2
    units = struct.unpack_from(f"<{n_units}H", payload)
    pieces: list[str] = []
    start = 0  # first unit of the current run of ordinary characters
    i = 0
    while i < n_units:
        code = units[i]
        if code >= 32:
            i += 1
            continue
        if start < i:
            pieces.append(payload[start * 2 : i * 2].decode("utf-16-le", errors="replace"))
        pieces.append(_HWP_CHAR_CONTROLS.get(code, ""))
        i += 8 if code in _HWP_WIDE_CONTROLS else 1
        start = i
    if start < n_units:
        pieces.append(payload[start * 2 : n_units * 2].decode("utf-16-le", errors="replace"))
    return "".join(pieces)


def hwp_section_paragraphs(data: bytes, compressed: bool) -> list[str]:
    """Paragraph texts of one ``BodyText/SectionN`` stream (raw deflate when the file is compressed)."""
    if compressed:
        inflater = zlib.decompressobj(-15)
        try:
            data = inflater.decompress(data, _HWP_MAX_SECTION)
        except zlib.error as exc:
            raise LoaderError(f"corrupt HWP: cannot decompress section ({exc})") from exc
        if inflater.unconsumed_tail:
            raise LoaderError("HWP section too large to decompress")
    paragraphs = []
    for tag_id, _level, payload in iter_hwp_records(data):
        if tag_id == HWPTAG_PARA_TEXT:
            paragraphs.append(decode_hwp_para_text(payload).rstrip("\n"))
    return paragraphs


def extract(data: bytes) -> tuple[str, str, list[str]]:
    if data.startswith(b"PK"):
        return extract_hwpx(data)  # an HWPX saved with the old suffix; Hangul opens those too
    if not data.startswith(_OLE_MAGIC):
        if data.startswith(b"HWP Document File V3"):
            raise LoaderError("HWP 3.0 files are not supported (save as HWP 5.0 or HWPX)")
        raise LoaderError("not an HWP 5.0 file (no OLE compound document signature)")
    import olefile

    try:
        ole = olefile.OleFileIO(data)
    except Exception as exc:  # olefile raises OSError and others on corrupt files
        raise LoaderError(f"corrupt HWP: {_reason(exc)}") from exc
    with ole:
        if not ole.exists("FileHeader"):
            raise LoaderError("not an HWP file (no FileHeader stream)")
        header = ole.openstream("FileHeader").read()
        if header[:32].rstrip(b"\x00") != _HWP_SIGNATURE or len(header) < 40:
            raise LoaderError("not an HWP file (bad FileHeader signature)")
        (flags,) = struct.unpack_from("<I", header, 36)
        if flags & _HWP_FLAG_PASSWORD:
            raise LoaderError("encrypted HWP")
        sections = sorted(
            (int(entry[1][len("Section") :]), entry)
            for entry in ole.listdir(streams=True, storages=False)
            if len(entry) == 2
            and entry[0] == "BodyText"
            and entry[1].startswith("Section")
            and entry[1][len("Section") :].isdigit()
        )
        if not sections:
            if flags & _HWP_FLAG_DISTRIBUTION:
                raise LoaderError("distribution-only HWP (encrypted ViewText) is not supported")
            raise LoaderError("corrupt HWP: no BodyText sections")
        paragraphs: list[str] = []
        for _number, entry in sections:
            stream = ole.openstream("/".join(entry)).read()
            paragraphs.extend(hwp_section_paragraphs(stream, bool(flags & _HWP_FLAG_COMPRESSED)))
        title = _hwp_summary_title(ole)
    return title, "\n\n".join(p for p in paragraphs if p.strip()), []


def _hwp_summary_title(ole: Any) -> str:
    """Title from the ``\\x05HwpSummaryInformation`` property set (property 2), when filled in."""
    try:
        if not ole.exists("\x05HwpSummaryInformation"):
            return ""
        value = ole.getproperties("\x05HwpSummaryInformation", convert_time=False).get(2)
    except Exception:  # a broken summary only costs the title
        return ""
    if isinstance(value, bytes):
        value = value.decode("utf-16-le", errors="ignore")
    return value.strip("\x00 ") if isinstance(value, str) else ""
