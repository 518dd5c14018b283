"""Turn files on disk into :class:`Document` records, one format at a time.

Loaders are deliberately forgiving about *content* (legacy encodings, odd markup, a few bad JSONL lines)
and strict about *failure*: anything that goes wrong inside one file becomes a :class:`LoaderError` with
a short reason, so that the pipeline can record it and carry on with the next file instead of aborting a
long indexing run. Heavy parsers (pypdf, python-docx, BeautifulSoup, olefile) are imported lazily so
that importing the indexer stays cheap for commands that never read such a file.
"""

from __future__ import annotations

import codecs
import io
import json
import logging
import math
import os
import re
import struct
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from kret.errors import LoaderError, UserInputError
from kret.indexer.clean import clean_text
from kret.indexer.document import Document

SUPPORTED_SUFFIXES: frozenset[str] = frozenset(
    {".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx", ".hwp", ".hwpx", ".jsonl"}
)

# Suffixes that share a source_type with a canonical one, so filters do not need to know both spellings.
_SOURCE_TYPE_ALIASES = {"markdown": "md", "htm": "html"}


def source_types() -> list[str]:
    """The ``source_type`` values documents can carry (what a file-type filter may name)."""
    return sorted({_SOURCE_TYPE_ALIASES.get(s[1:], s[1:]) for s in SUPPORTED_SUFFIXES})


def canonical_source_type(name: str) -> str | None:
    """``md`` for ``md``/``.MD``/``markdown``; None for a name that is no supported type."""
    key = name.strip().lower().lstrip(".")
    key = _SOURCE_TYPE_ALIASES.get(key, key)
    return key if key in source_types() else None


# JSONL field names, in order of preference. BEIR uses ``_id``/``title``/``text``; Pyserini uses
# ``id``/``contents``; others use ``body`` or ``content``.
JSONL_TEXT_KEYS = ("text", "contents", "body", "content")
JSONL_ID_KEYS = ("_id", "id", "doc_id")
_JSONL_RESERVED = frozenset({*JSONL_TEXT_KEYS, *JSONL_ID_KEYS, "title", "metadata"})

_MAX_REASON = 200


# --------------------------------------------------------------------------------------------------------
# discovery


def discover(paths: Sequence[Path | str]) -> list[tuple[Path, Path]]:
    """Expand the user's files and folders into ``(file, root)`` pairs, sorted by file path.

    ``root`` is the folder the user named (or a named file's parent): ids are relative to it, so the
    same tree indexed from another working directory or machine gets the same ids. Hidden entries are
    skipped while walking (``.git``, editor swap files) but a hidden path named explicitly is honoured.
    A file reachable twice (overlapping arguments, symlinks) is kept once, under the first argument that
    reached it. Files with unsupported suffixes are skipped silently so that shell globs work.
    """
    found: dict[str, tuple[Path, Path]] = {}

    def add(file: Path, root: Path) -> None:
        key = os.path.realpath(file)
        if key not in found:
            found[key] = (file, root)

    for raw in paths:
        path = Path(os.path.abspath(Path(raw).expanduser()))
        if not path.exists():
            raise UserInputError(f"no such file or folder: {raw}")
        if path.is_dir():
            for file in _walk(path):
                add(file, path)
        elif path.suffix.lower() in SUPPORTED_SUFFIXES:
            add(path, path.parent)
    return sorted(found.values(), key=lambda pair: (pair[0].as_posix(), pair[1].as_posix()))


def _walk(top: Path) -> Iterator[Path]:
    """Yield supported, non-hidden files below ``top`` in a stable order, following symlinks once."""
    seen: set[tuple[int, int]] = set()
    st = os.stat(top)
    seen.add((st.st_dev, st.st_ino))
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        keep = []
        for name in sorted(dirnames):
            if name.startswith("."):
                continue
            try:
                st = os.stat(os.path.join(dirpath, name))
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen:  # a symlink back up the tree, or a second link to the same folder
                continue
            seen.add(key)
            keep.append(name)
        dirnames[:] = keep
        for name in sorted(filenames):
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in SUPPORTED_SUFFIXES:
                continue
            file = Path(dirpath, name)
            if file.is_file():  # drops broken symlinks, sockets, fifos
                yield file


# --------------------------------------------------------------------------------------------------------
# entry points


def load_file(path: Path, root: Path) -> list[Document]:
    """Load one file into Documents (several for JSONL); per-line JSONL problems are dropped silently."""
    docs, _problems = load_file_report(path, root)
    return docs


def load_file_report(path: Path, root: Path) -> tuple[list[Document], list[str]]:
    """Load one file and also return the problems that did not stop it (``"line 7: invalid JSON"``).

    Raises :class:`LoaderError` when the file as a whole cannot be read; never anything else for a bad
    file, so callers need only one ``except``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise LoaderError(f"unsupported file type {suffix or '(no suffix)'}")
    try:
        mtime = path.stat().st_mtime
        data = path.read_bytes()
    except PermissionError as exc:
        raise LoaderError("permission denied") from exc
    except FileNotFoundError as exc:
        raise LoaderError("file not found") from exc
    except IsADirectoryError as exc:
        raise LoaderError("is a folder, not a file") from exc
    except OSError as exc:
        raise LoaderError(f"cannot read file: {exc.strerror or exc}") from exc

    source_type = suffix[1:]
    source_type = _SOURCE_TYPE_ALIASES.get(source_type, source_type)
    rel = _relative_id(path, Path(root))
    base = {"path": str(Path(os.path.abspath(path))), "source_type": source_type, "mtime": mtime}
    if not data:
        return [], ["empty file"]
    try:
        if source_type == "jsonl":
            docs, problems = _load_jsonl(data, rel, base)
            return docs, problems if docs or problems else ["no rows (only blank lines)"]
        title, text, problems = _EXTRACTORS[source_type](data)
        text = clean_text(text)
        if not text:
            return [], problems or [_NO_TEXT.get(source_type, "no text")]
        return [Document(doc_id=rel, text=text, title=_clean_title(title), metadata={}, **base)], problems
    except LoaderError:
        raise
    except Exception as exc:  # one bad file must never abort the run
        raise LoaderError(_reason(exc)) from exc


# Why a file that was read without error still gave no document (when its extractor did not say more).
_NO_TEXT = {
    "html": "no text: only markup or script",
    "md": "no text: only markup",
    "txt": "no text: only whitespace or control characters",
}
_LINE_PROBLEM = re.compile(r"^line (\d+): (.*)$", re.DOTALL)


def skipped_entries(path: str, docs: Sequence[Document], problems: Sequence[str]) -> list[dict[str, str]]:
    """What one file's load left out, as rows ``{"path", "reason"}`` for the indexing summary.

    A file that gave no document is one row with the reasons; a problem that names a line (JSONL) is a row
    of its own with ``path:line``, so a user can open the file at the bad row; other problems of a file
    that did load (an unreadable PDF page) are rows under the file's path.
    """
    rows: list[dict[str, str]] = []
    file_level: list[str] = []
    for problem in problems:
        match = _LINE_PROBLEM.match(problem)
        if match:
            rows.append({"path": f"{path}:{match.group(1)}", "reason": match.group(2)})
        else:
            file_level.append(problem)
    if not docs:
        rows.insert(0, {"path": path, "reason": "; ".join(file_level) or "no usable row"})
    else:
        rows[:0] = [{"path": path, "reason": problem} for problem in file_level]
    return rows


def _relative_id(path: Path, root: Path) -> str:
    """Posix path of ``path`` below ``root``, NFC-normalised so macOS (NFD) file names give the same id."""
    abs_path = Path(os.path.abspath(path))
    try:
        rel = abs_path.relative_to(Path(os.path.abspath(root))).as_posix()
    except ValueError:
        rel = abs_path.as_posix()
    return unicodedata.normalize("NFC", rel)


def _reason(exc: BaseException) -> str:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    reason = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return reason[:_MAX_REASON]


def _clean_title(title: str | None) -> str:
    if not title:
        return ""
    return " ".join(clean_text(str(title)).split())


# --------------------------------------------------------------------------------------------------------
# encodings

_UTF8_BOM = codecs.BOM_UTF8
_UNICODE_BOMS = (
    codecs.BOM_UTF32_LE,
    codecs.BOM_UTF32_BE,
    codecs.BOM_UTF16_LE,
    codecs.BOM_UTF16_BE,
    _UTF8_BOM,
)
_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]+)""", re.IGNORECASE)


def decode_text(data: bytes, declared: str | None = None) -> str:
    """Decode the bytes of a text file, favouring the encodings Korean files actually come in.

    Order: a BOM wins; then strict UTF-8 (it practically never validates by accident); then an encoding
    the file itself declares (HTML ``<meta charset>``); then cp949, the superset of EUC-KR that legacy
    Korean Windows files use; only then charset-normalizer's guess. Latin-1 is never a blind fallback
    because it "succeeds" on any bytes and would store Korean as mojibake.
    """
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)) and len(data) % 4 == 0:
        return _decode_or_fail(data, "utf-32")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _decode_or_fail(data, "utf-16")
    if data.startswith(_UTF8_BOM):
        return data[len(_UTF8_BOM) :].decode("utf-8", errors="replace")
    if b"\x00" in data[:8192]:
        text = _utf16_without_bom(data)
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


def _utf16_without_bom(data: bytes) -> str | None:
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


def _decode_or_fail(data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        return data.decode(encoding, errors="replace")


def _html_declared_encoding(data: bytes) -> str | None:
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


# --------------------------------------------------------------------------------------------------------
# plain text and markdown


def _extract_txt(data: bytes) -> tuple[str, str, list[str]]:
    return "", decode_text(data), []


_FRONT_MATTER = re.compile(r"\A(---|\+\+\+)[ \t]*\n(.*?)\n(?:---|\.\.\.|\+\+\+)[ \t]*(?:\n|\Z)", re.DOTALL)
_FM_TITLE = re.compile(r"""^title\s*[:=]\s*(.+?)\s*$""", re.MULTILINE | re.IGNORECASE)
_ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_NOT_SETEXT_TEXT = re.compile(r"^ {0,3}(#|>|[-*+][ \t]|\d+[.)][ \t]|\||```|~~~)")
_MD_IMAGE = re.compile(r"!\[([^\]\n]*)\]\([^)\n]*\)")
_MD_LINK = re.compile(r"(?<!!)\[([^\]\n]+)\]\([^)\n]*\)")
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)


def _extract_markdown(data: bytes) -> tuple[str, str, list[str]]:
    """Keep markdown mostly as is: ``#`` lines are what the chunker reads section headings from.

    Setext headings (underlined with ``===``/``---``) are rewritten as ``#`` lines so the chunker sees
    them too; link and image targets are dropped because URLs are noise for both BM25 and embeddings.
    """
    text = clean_text(decode_text(data))
    title = ""
    match = _FRONT_MATTER.match(text)
    if match:
        fm_title = _FM_TITLE.search(match.group(2))
        if fm_title:
            title = fm_title.group(1).strip().strip("\"'").strip()
        text = text[match.end() :]
    text = _HTML_COMMENT.sub("", text)

    lines = text.split("\n")
    out: list[str] = []
    in_fence: str | None = None
    first_h1 = ""
    for line in lines:
        fence = _FENCE.match(line)
        if in_fence:
            if fence and fence.group(1) == in_fence:
                in_fence = None
            out.append(line)
            continue
        if fence:
            in_fence = fence.group(1)
            out.append(line)
            continue
        setext = _SETEXT.match(line)
        if setext and out and out[-1].strip() and not _NOT_SETEXT_TEXT.match(out[-1]):
            level = 1 if setext.group(1).startswith("=") else 2
            out[-1] = "#" * level + " " + out[-1].strip()
            if level == 1 and not first_h1:
                first_h1 = out[-1][2:]
            continue
        heading = _ATX_HEADING.match(line)
        if heading:
            line = f"{heading.group(1)} {heading.group(2)}"
            if len(heading.group(1)) == 1 and not first_h1:
                first_h1 = heading.group(2)
        else:
            line = _MD_LINK.sub(r"\1", _MD_IMAGE.sub(r"\1", line))
        out.append(line)
    return title or _strip_md_inline(first_h1), "\n".join(out), []


def _strip_md_inline(text: str) -> str:
    text = _MD_LINK.sub(r"\1", _MD_IMAGE.sub(r"\1", text))
    return re.sub(r"[*_`]+", "", text).strip()


# --------------------------------------------------------------------------------------------------------
# HTML

_HTML_DROP = frozenset(
    {"script", "style", "noscript", "template", "nav", "footer", "head", "svg", "iframe", "object", "canvas"}
)
_HTML_PARA = frozenset(
    {"p", "pre", "table", "ul", "ol", "dl", "blockquote", "section", "article", "main", "figure", "form"}
)
_HTML_LINE = frozenset(
    {
        "address", "aside", "body", "caption", "center", "dd", "details", "dialog", "div", "dt",
        "fieldset", "figcaption", "header", "html", "legend", "li", "option", "summary", "tbody",
        "tfoot", "thead", "tr",
    }
)  # fmt: skip
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_WS = re.compile(r"[ \t\n\r\f]+")
_EMPTY_HEADING = re.compile(r"#{1,6}")


def _extract_html(data: bytes) -> tuple[str, str, list[str]]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(decode_text(data, _html_declared_encoding(data)), "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    if not title:
        h1 = soup.find("h1")
        title = h1.get_text(" ", strip=True) if h1 else ""
    return title, _html_to_text(soup), []


class _Exit:
    __slots__ = ("tag",)

    def __init__(self, tag: Any) -> None:
        self.tag = tag


def _html_to_text(soup: Any) -> str:
    """Flatten the DOM to text with block elements on their own lines and headings as ``#`` lines.

    Walks with an explicit stack: pathological pages nest thousands of unclosed tags, which would
    overflow Python's recursion limit.
    """
    from bs4.element import Comment, Declaration, Doctype, NavigableString, ProcessingInstruction, Tag

    skip_strings = (Comment, Declaration, Doctype, ProcessingInstruction)
    out: list[str] = []
    pre = 0
    heading = 0
    stack: list[Any] = list(reversed(soup.contents))
    while stack:
        node = stack.pop()
        if isinstance(node, _Exit):
            name = node.tag.name
            if name == "pre":
                pre -= 1
            if name in _HEADINGS:
                heading -= 1
                out.append("\n\n")
            elif heading:
                out.append(" ")
            elif name in _HTML_PARA:
                out.append("\n\n")
            elif name in _HTML_LINE:
                out.append("\n")
            continue
        if isinstance(node, NavigableString):
            if isinstance(node, skip_strings):
                continue
            text = str(node)
            out.append(text if pre and not heading else _WS.sub(" ", text))
            continue
        if not isinstance(node, Tag):
            continue
        name = node.name
        if name in _HTML_DROP:
            continue
        if name in ("br", "hr"):
            out.append(" " if heading else ("\n" if name == "br" else "\n\n"))
            continue
        if name in _HEADINGS and not heading:
            out.append("\n\n" + "#" * _HEADINGS[name] + " ")
            heading += 1
        elif name in _HEADINGS:
            heading += 1
        elif heading and (name in _HTML_PARA or name in _HTML_LINE):
            out.append(" ")
        elif name in ("td", "th"):
            if node.find_previous_sibling(("td", "th")) is not None:
                out.append(" | ")
        elif name in _HTML_PARA:
            out.append("\n\n")
        elif name in _HTML_LINE:
            out.append("\n")
        if name == "pre":
            pre += 1
        stack.append(_Exit(node))
        stack.extend(reversed(node.contents))
    lines = [line.strip() for line in "".join(out).split("\n")]
    return "\n".join(line for line in lines if not _EMPTY_HEADING.fullmatch(line))


# --------------------------------------------------------------------------------------------------------
# PDF


def _quiet_pypdf() -> None:
    """Keep pypdf's notes on recoverable damage ("EOF marker not found") off the user's terminal.

    pypdf reports them through ``logging``; with no handler configured anywhere, Python's last-resort
    handler prints them on stderr, in the middle of the progress bars. A NullHandler on pypdf's logger
    stops that while records still propagate to whatever logging the application sets up.
    """
    logger = logging.getLogger("pypdf")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())


def _extract_pdf(data: bytes) -> tuple[str, str, list[str]]:
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


# --------------------------------------------------------------------------------------------------------
# DOCX

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_DOCX_HEADING = re.compile(r"^heading\s*([1-9])$", re.IGNORECASE)


def _extract_docx(data: bytes) -> tuple[str, str, list[str]]:
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


# --------------------------------------------------------------------------------------------------------
# HWPX (OWPML: a zip of XML parts)

_HWPX_SECTION = re.compile(r"^Contents/section(\d+)\.xml$", re.IGNORECASE)


def _local(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _extract_hwpx(data: bytes) -> tuple[str, str, list[str]]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise LoaderError("corrupt HWPX: not a zip archive") from exc
    with archive:
        names = archive.namelist()
        if "META-INF/manifest.xml" in names and b"encryption-data" in archive.read("META-INF/manifest.xml"):
            raise LoaderError("encrypted HWPX")
        sections = sorted(
            ((int(m.group(1)), name) for name in names if (m := _HWPX_SECTION.match(name))),
        )
        if not sections:
            raise LoaderError("corrupt HWPX: no Contents/section*.xml")
        paragraphs: list[str] = []
        for _number, name in sections:
            try:
                root = ElementTree.fromstring(archive.read(name))
            except ElementTree.ParseError as exc:
                raise LoaderError(f"corrupt HWPX: {name}: {exc}") from exc
            paragraphs.extend(hwpx_paragraphs(root))
        title = _hwpx_title(archive, names)
    return title, "\n\n".join(p for p in paragraphs if p.strip()), []


def hwpx_paragraphs(root: ElementTree.Element) -> list[str]:
    """Text of every ``hp:p`` in document order, nested paragraphs (table cells, notes) as their own.

    Namespace-agnostic because Hancom has shipped several namespace URIs (2011, 2016, ...) for the same
    elements.
    """
    out: list[str] = []

    def walk(elem: ElementTree.Element, buffer: list[str] | None) -> None:
        for child in elem:
            name = _local(child.tag)
            if name == "p":
                slot = len(out)
                out.append("")
                own: list[str] = []
                walk(child, own)
                out[slot] = "".join(own).strip()
            elif name == "t":
                if buffer is not None:
                    buffer.append(_hwpx_t_text(child))
            else:
                walk(child, buffer)

    walk(root, None)
    return out


_HWPX_INLINE = {"tab": "\t", "lineBreak": "\n", "nbSpace": " ", "fwSpace": " ", "hyphen": "-"}


def _hwpx_t_text(elem: ElementTree.Element) -> str:
    parts = [elem.text or ""]
    for child in elem:
        parts.append(_HWPX_INLINE.get(_local(child.tag), ""))
        parts.append(child.tail or "")
    return "".join(parts)


def _hwpx_title(archive: zipfile.ZipFile, names: list[str]) -> str:
    """The title from ``content.hpf`` metadata, if the author filled it in (usually empty)."""
    hpf = next((n for n in names if n.lower().endswith("content.hpf")), None)
    if hpf is None:
        return ""
    try:
        root = ElementTree.fromstring(archive.read(hpf))
    except ElementTree.ParseError:
        return ""
    for elem in root.iter():
        if _local(elem.tag) == "title" and elem.text and elem.text.strip():
            return elem.text.strip()
    return ""


# --------------------------------------------------------------------------------------------------------
# HWP 5.0 (binary: OLE compound file of zlib-compressed record streams)

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


def _extract_hwp(data: bytes) -> tuple[str, str, list[str]]:
    if data.startswith(b"PK"):
        return _extract_hwpx(data)  # an HWPX saved with the old suffix; Hangul opens those too
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


# --------------------------------------------------------------------------------------------------------
# JSONL


def _load_jsonl(data: bytes, rel: str, base: dict[str, Any]) -> tuple[list[Document], list[str]]:
    """One Document per row; bad rows are reported and skipped unless no row at all is usable."""
    text, binary_lines = _jsonl_decode(data)
    docs: list[Document] = []
    problems: list[str] = []
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
        raise LoaderError(f"no usable row in JSONL file ({problems[0]})")
    return docs, problems


def _jsonl_decode(data: bytes) -> tuple[str, set[int]]:
    """The file's text, and the numbers of lines that hold NUL bytes (blanked in the text).

    A NUL byte makes a whole text file "binary", but in JSONL it costs only its line: a crashed writer or a
    bad export leaves one broken row in an otherwise good corpus. UTF-16/32 files (with or without a
    byte-order mark) hold NULs in every ASCII character and are decoded whole.
    """
    if b"\x00" not in data or data.startswith(_UNICODE_BOMS) or _utf16_without_bom(data) is not None:
        return decode_text(data), set()
    lines = data.split(b"\n")
    binary = {number for number, line in enumerate(lines, start=1) if b"\x00" in line}
    kept = b"\n".join(b"" if number in binary else line for number, line in enumerate(lines, start=1))
    return decode_text(kept), binary


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


_EXTRACTORS: dict[str, Callable[[bytes], tuple[str, str, list[str]]]] = {
    "txt": _extract_txt,
    "md": _extract_markdown,
    "html": _extract_html,
    "pdf": _extract_pdf,
    "docx": _extract_docx,
    "hwpx": _extract_hwpx,
    "hwp": _extract_hwp,
}
