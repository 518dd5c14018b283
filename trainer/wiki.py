"""Streaming readers for Korean Wikipedia in the three shapes people actually have on disk.

A full kowiki dump is ~1.3 M pages and several GB of text, so every reader is a generator that holds one
page at a time: WikiExtractor output is read line by line (``bz2.open`` streams), the MediaWiki XML dump
goes through ``iterparse`` with elements cleared as soon as a page is handled. All three readers yield the
same ``WikiPage`` with cleaned plain text, so pair building does not care where the text came from.

WikiExtractor output is not clean: it keeps HTML-escaped residual markup (``&lt;ref&gt;``, ``&lt;br&gt;``),
unconverted ``[[link|text]]`` and ``[[분류:…]]`` lines, and the holes left by removed templates, such as
``제임스 얼 카터 주니어(, 1924년 10월 1일 ~ )``. ``clean_wiki_text`` repairs those so the training text
does not teach the model markup.
"""

from __future__ import annotations

import bz2
import html
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from kret.errors import DatasetError, UserInputError

__all__ = [
    "ReadStats",
    "WikiPage",
    "clean_wiki_text",
    "detect_format",
    "read_jsonl",
    "read_wiki",
    "read_wikiextractor",
    "read_xml_dump",
    "wikitext_to_text",
]


@dataclass
class WikiPage:
    """One article as plain text; ``is_disambiguation`` is set only when the source marks it explicitly.

    WikiExtractor output has lost the ``{{동음이의}}`` template, so for it the pair builder falls back to
    title and wording markers; the XML reader still sees the template and records it here.
    """

    page_id: str
    title: str
    text: str
    url: str | None
    source: str
    is_disambiguation: bool = False


@dataclass
class ReadStats:
    """What a reader saw but did not yield, so a pre-training run can report where pages went."""

    files: int = 0
    pages: int = 0
    redirects_skipped: int = 0
    other_namespace_skipped: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "files": self.files,
            "pages": self.pages,
            "redirects_skipped": self.redirects_skipped,
            "other_namespace_skipped": self.other_namespace_skipped,
        }


# ---------------------------------------------------------------------------------------------------------
# Text cleanup shared by all readers
# ---------------------------------------------------------------------------------------------------------

# Namespace prefixes of links that are not running text (files, categories), Korean and English forms.
_FILE_NS = ("파일", "그림", "file", "image", "media", "미디어")
_CATEGORY_NS = ("분류", "category")
_DROP_LINK_NS = frozenset(_FILE_NS + _CATEGORY_NS)
_INTERLANG_RE = re.compile(r"^:?[a-z]{2,3}(?:-[a-z]+)?:", re.IGNORECASE)

# Tags whose whole content is not prose. Only known tag names are touched: Korean articles also use
# angle brackets as quotation marks (``<The Beatles>``), which must survive.
_DROP_CONTENT_TAGS = (
    "ref",
    "references",
    "gallery",
    "score",
    "mapframe",
    "maplink",
    "timeline",
    "templatestyles",
    "graph",
    "imagemap",
    "math",
    "syntaxhighlight",
    "source",
)
_KEEP_CONTENT_TAGS = (
    "br",
    "chem",
    "ce",
    "onlyinclude",
    "includeonly",
    "noinclude",
    "poem",
    "sub",
    "sup",
    "small",
    "big",
    "div",
    "span",
    "p",
    "del",
    "ins",
    "s",
    "u",
    "i",
    "b",
    "em",
    "strong",
    "center",
    "font",
    "blockquote",
    "code",
    "pre",
    "nowiki",
    "abbr",
    "section",
    "hiero",
    "tt",
    "var",
    "cite",
    "q",
    "ruby",
    "rb",
    "rt",
    "rp",
    "wbr",
    "hr",
    "table",
    "tr",
    "td",
    "th",
    "caption",
    "ul",
    "ol",
    "li",
    "dl",
    "dt",
    "dd",
)
_TAG_NAMES = "|".join(_DROP_CONTENT_TAGS + _KEEP_CONTENT_TAGS)
_SELF_CLOSING_DROP_RE = re.compile(rf"<(?:{'|'.join(_DROP_CONTENT_TAGS)})\b[^<>]*/>", re.IGNORECASE)
_DROP_BLOCK_RE = re.compile(
    rf"<({'|'.join(_DROP_CONTENT_TAGS)})\b[^<>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL
)
_BR_RE = re.compile(r"<br\s*/?>", re.IGNORECASE)
_ANY_KNOWN_TAG_RE = re.compile(rf"</?(?:{_TAG_NAMES})\b[^<>]*/?>", re.IGNORECASE)
_MAGIC_WORD_RE = re.compile(r"__[A-Z]{3,}__")
# Template holes: "(, 1924년" -> "(1924년", "1924년 ~ , )" -> "1924년 ~)", "()" / "(, , )" -> "".
# Patterns start with a literal or one optional space: a leading ``\s*`` would be tried at every space.
_PAREN_OPEN_JUNK_RE = re.compile(r"([(（])\s*[,;，、:][\s,;，、:]*")
_PAREN_CLOSE_JUNK_RE = re.compile(r"\s?[,;，、:][\s,;，、:]*([)）])")
_EMPTY_PARENS_RE = re.compile(r"\s?[(（]\s*[)）]")
_DOUBLE_COMMA_RE = re.compile(r",\s*,[\s,]*")
_MULTI_SPACE_RE = re.compile(r" {2,}")
_ODD_SPACE_RE = re.compile(r"[\t\u00a0\u3000]")
_ZERO_WIDTH_RE = re.compile(r"[\u200b\ufeff]")


_BRACKETS_RE = re.compile(r"\[\[|\]\]")


def _replace_links(text: str) -> str:
    """Turn ``[[target|label]]`` into ``label`` and drop file/category links, minding nesting.

    File captions nest links (``[[파일:a.jpg|섬네일|[[윤치호]] 사진]]``), which one regex cannot match;
    the brackets are balanced with a stack instead. Unbalanced brackets are dropped, their words kept.
    """
    if "[[" not in text:
        return text.replace("]]", "")
    out: list[str] = []
    pos = 0
    open_at: int | None = None
    depth = 0
    for m in _BRACKETS_RE.finditer(text):
        if m.group(0) == "[[":
            if depth == 0:
                out.append(text[pos : m.start()])
                open_at = m.end()
            depth += 1
        elif depth > 0:
            depth -= 1
            if depth == 0 and open_at is not None:
                out.append(_render_link(text[open_at : m.start()]))
                pos = m.end()
                open_at = None
    if depth > 0 and open_at is not None:  # an unclosed link: keep its words
        out.append(_replace_links(text[open_at:]))
    else:
        out.append(text[pos:])
    return "".join(out).replace("]]", "").replace("[[", "")


def _render_link(inner: str) -> str:
    target, _, label = inner.partition("|")
    ns = target.split(":", 1)[0].strip().lower() if ":" in target else ""
    if ns in _DROP_LINK_NS:
        return ""
    if label:
        return _replace_links(label)
    if _INTERLANG_RE.match(target.strip()):
        return ""
    return target


def clean_wiki_text(text: str, *, unescape: bool = True) -> str:
    """Repair WikiExtractor leftovers; one paragraph per line, blank lines dropped.

    ``unescape`` is for WikiExtractor's HTML-escaped output only: text that is already plain may contain a
    literal ``&amp;`` that must stay.
    """
    if unescape:
        text = html.unescape(text)
    text = _SELF_CLOSING_DROP_RE.sub("", text)
    text = _DROP_BLOCK_RE.sub("", text)
    text = _BR_RE.sub("\n", text)
    text = _ANY_KNOWN_TAG_RE.sub("", text)
    text = _replace_links(text)
    text = _MAGIC_WORD_RE.sub("", text)
    text = _ZERO_WIDTH_RE.sub("", _ODD_SPACE_RE.sub(" ", text))
    lines = []
    for line in text.split("\n"):
        if "  " in line:
            line = _MULTI_SPACE_RE.sub(" ", line)
        if "," in line:
            line = _DOUBLE_COMMA_RE.sub(", ", line)
        # Repeat: removing "()" can expose a new "(, )" around it.
        for _ in range(3 if ("(" in line or "（" in line) else 0):
            new = _EMPTY_PARENS_RE.sub(
                "", _PAREN_CLOSE_JUNK_RE.sub(r"\1", _PAREN_OPEN_JUNK_RE.sub(r"\1", line))
            )
            if new == line:
                break
            line = new
        line = line.strip()
        if line:
            lines.append(line)
    return "\n".join(lines)


def _drop_title_line(body: str, title: str) -> str:
    """WikiExtractor repeats the title as the first body line; a body that does not is left whole."""
    first, sep, rest = body.lstrip("\n").partition("\n")
    if first.strip() == title.strip():
        return rest
    return body


# ---------------------------------------------------------------------------------------------------------
# WikiExtractor
# ---------------------------------------------------------------------------------------------------------

_DOC_OPEN_RE = re.compile(r"^<doc\s+([^>]*)>\s*$")
_ATTR_RE = re.compile(r'(\w+)="([^"]*)"')
_WIKIEXTRACTOR_NAME_RE = re.compile(r"^wiki_\d+(?:\.bz2)?$")


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".bz2":
        return bz2.open(path, "rt", encoding="utf-8", errors="replace")
    return path.open("r", encoding="utf-8", errors="replace")


def _wikiextractor_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DatasetError(f"{path}: no such file or folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and _WIKIEXTRACTOR_NAME_RE.match(p.name))
    if not files:
        raise DatasetError(f"{path}: no WikiExtractor files (wiki_NN or wiki_NN.bz2) in this folder")
    return files


def read_wikiextractor(
    path: Path, *, source: str = "kowiki", stats: ReadStats | None = None
) -> Iterator[WikiPage]:
    """Yield the ``<doc>`` blocks of a WikiExtractor folder (recursive, sorted) or a single file."""
    path = Path(path)
    stats = stats if stats is not None else ReadStats()
    for file in _wikiextractor_files(path):
        stats.files += 1
        with _open_text(file) as fh:
            attrs: dict[str, str] | None = None
            body: list[str] = []
            for lineno, line in enumerate(fh, 1):
                if attrs is None:
                    m = _DOC_OPEN_RE.match(line.strip())
                    if m:
                        attrs = dict(_ATTR_RE.findall(m.group(1)))
                        body = []
                    continue
                if line.startswith("</doc>"):
                    stats.pages += 1
                    yield _wikiextractor_page(attrs, body, source, file, lineno)
                    attrs = None
                    continue
                body.append(line)
            if attrs is not None:
                raise DatasetError(f"{file}: <doc> block opened but never closed (truncated file?)")


def _wikiextractor_page(
    attrs: dict[str, str], body: list[str], source: str, file: Path, lineno: int
) -> WikiPage:
    if "title" not in attrs:
        raise DatasetError(f"{file}:{lineno}: <doc> block without a title attribute")
    title = html.unescape(attrs["title"]).strip()
    raw = html.unescape("".join(body))
    text = clean_wiki_text(_drop_title_line(raw, title), unescape=False)
    return WikiPage(
        page_id=attrs.get("id", ""),
        title=title,
        text=text,
        url=html.unescape(attrs["url"]) if "url" in attrs else None,
        source=source,
    )


# ---------------------------------------------------------------------------------------------------------
# JSONL
# ---------------------------------------------------------------------------------------------------------

_JSONL_TEXT_KEYS = ("text", "body", "contents", "content")
_JSONL_ID_KEYS = ("id", "page_id", "_id", "doc_id", "curid")


def iter_json_rows(path: Path) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """(line number, "file:line", row) for every non-blank line of a JSONL file, plain or .bz2.

    A line that is not a JSON object raises ``DatasetError`` naming file and line: a silently shorter
    training set is worse than a stopped run.
    """
    opener = bz2.open if path.suffix == ".bz2" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise DatasetError(f"{where}: expected a JSON object per line")
            yield lineno, where, row


def read_jsonl(
    path: Path, *, source: str = "kowiki", clean: bool = True, stats: ReadStats | None = None
) -> Iterator[WikiPage]:
    """Yield one page per JSONL row (``title`` + ``text``/``body``/``contents``; ``id``/``url`` optional).

    A malformed row raises ``DatasetError`` naming file and line: a silently shorter pre-training set is
    worse than a stopped run. Blank lines are allowed. ``clean`` runs the markup repair without HTML
    unescaping (WikiExtractor's ``--json`` output is not escaped).
    """
    path = Path(path)
    stats = stats if stats is not None else ReadStats()
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    stats.files += 1
    for lineno, where, row in iter_json_rows(path):
        title = row.get("title")
        if not isinstance(title, str) or not title.strip():
            raise DatasetError(f"{where}: missing or empty 'title'")
        text = next((row[k] for k in _JSONL_TEXT_KEYS if k in row), None)
        if not isinstance(text, str):
            raise DatasetError(f"{where}: needs a string 'text', 'body' or 'contents'")
        page_id = next((row[k] for k in _JSONL_ID_KEYS if row.get(k) not in (None, "")), None)
        title = title.strip()
        text = _drop_title_line(text, title)
        stats.pages += 1
        yield WikiPage(
            page_id=str(page_id) if page_id is not None else f"{path.stem}:{lineno}",
            title=title,
            text=clean_wiki_text(text, unescape=False) if clean else text.strip(),
            url=row.get("url") if isinstance(row.get("url"), str) else None,
            source=source,
            is_disambiguation=bool(row.get("is_disambiguation", False)),
        )


# ---------------------------------------------------------------------------------------------------------
# MediaWiki XML dump
# ---------------------------------------------------------------------------------------------------------

# Names of the disambiguation box templates (exact: hatnotes such as {{다른 뜻}} or {{동명이인}} sit on
# ordinary articles and must not flag them). English names for other wikis.
_DISAMBIG_TEMPLATES = frozenset(
    {
        "동음이의",
        "동음이의어",
        "인명 동음이의",
        "지명 동음이의",
        "약어 동음이의",
        "disambig",
        "disambiguation",
        "dab",
        "hndis",
        "geodis",
        "set index",
    }
)


def _is_disambig_template(name: str) -> bool:
    return " ".join(name.replace("_", " ").split()).lower() in _DISAMBIG_TEMPLATES


# Sections that hold references and link lists, not prose; dropped with everything under them.
_SKIP_SECTIONS = frozenset(
    {
        "각주",
        "주석",
        "참고 문헌",
        "참고문헌",
        "참고 자료",
        "참고자료",
        "출처",
        "외부 링크",
        "외부링크",
        "같이 보기",
        "관련 항목",
        "references",
        "notes",
        "see also",
        "external links",
        "bibliography",
        "further reading",
    }
)
_REDIRECT_TEXT_RE = re.compile(r"^\s*#\s*(?:redirect|넘겨주기)", re.IGNORECASE)


def _local(tag: str) -> str:
    """``{http://www.mediawiki.org/xml/export-0.11/}page`` -> ``page``: dumps change the namespace."""
    return tag.rsplit("}", 1)[-1]


def _child_text(elem: ET.Element, name: str) -> str | None:
    for child in elem:
        if _local(child.tag) == name:
            return child.text or ""
    return None


def read_xml_dump(
    path: Path, *, source: str = "kowiki", stats: ReadStats | None = None
) -> Iterator[WikiPage]:
    """Yield the main-namespace articles of a ``*-pages-articles.xml(.bz2)`` dump as plain text.

    Redirects and other namespaces are skipped and counted in ``stats``. Needs ``mwparserfromhell``
    (``pip install 'kret[train]'``).
    """
    path = Path(path)
    stats = stats if stats is not None else ReadStats()
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    try:
        import mwparserfromhell  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the install
        raise UserInputError(
            "reading a MediaWiki XML dump needs mwparserfromhell: pip install 'kret[train]'"
        ) from None
    stats.files += 1
    opener = bz2.open if path.suffix == ".bz2" else open
    with opener(path, "rb") as fh:
        root: ET.Element | None = None
        url_prefix: str | None = None
        try:
            for event, elem in ET.iterparse(fh, events=("start", "end")):
                if root is None:
                    root = elem
                if event != "end":
                    continue
                name = _local(elem.tag)
                if name == "siteinfo":
                    url_prefix = _curid_url_prefix(_child_text(elem, "base"))
                    continue
                if name != "page":
                    continue
                page = _xml_page(elem, source, stats, url_prefix)
                # Drop the handled page from the tree, or memory grows with the dump.
                elem.clear()
                root.clear()
                if page is not None:
                    yield page
        except ET.ParseError as exc:
            raise DatasetError(f"{path}: malformed XML ({exc})") from None


def _curid_url_prefix(base: str | None) -> str | None:
    """``https://ko.wikipedia.org/wiki/대문`` -> ``https://ko.wikipedia.org/wiki?curid=``, the form
    WikiExtractor writes, which survives title renames."""
    m = re.match(r"^(https?://[^/]+)/", (base or "").strip())
    return f"{m.group(1)}/wiki?curid=" if m else None


def _xml_page(elem: ET.Element, source: str, stats: ReadStats, url_prefix: str | None) -> WikiPage | None:
    stats.pages += 1
    title = (_child_text(elem, "title") or "").strip()
    ns = (_child_text(elem, "ns") or "0").strip()
    if ns != "0":
        stats.other_namespace_skipped += 1
        return None
    text = ""
    redirect = False
    for child in elem:
        name = _local(child.tag)
        if name == "redirect":
            redirect = True
        elif name == "revision":
            text = _child_text(child, "text") or ""
    if redirect or _REDIRECT_TEXT_RE.match(text):
        stats.redirects_skipped += 1
        return None
    plain, disambig = _wikitext_to_text(text)
    page_id = (_child_text(elem, "id") or "").strip()
    return WikiPage(
        page_id=page_id,
        title=title,
        text=plain,
        url=f"{url_prefix}{page_id}" if url_prefix and page_id else None,
        source=source,
        is_disambiguation=disambig,
    )


def wikitext_to_text(wikitext: str) -> str:
    """Plain text of an article's wikitext: no templates, tables, references, files or categories."""
    return _wikitext_to_text(wikitext)[0]


def _wikitext_to_text(wikitext: str) -> tuple[str, bool]:
    import mwparserfromhell
    from mwparserfromhell.nodes import (
        Argument,
        Comment,
        ExternalLink,
        Heading,
        HTMLEntity,
        Tag,
        Template,
        Text,
        Wikilink,
    )

    disambig = False

    def render(nodes: Iterable[Any]) -> str:
        nonlocal disambig
        parts: list[str] = []
        for node in nodes:
            if isinstance(node, Text):
                parts.append(str(node.value))
            elif isinstance(node, Template):
                if _is_disambig_template(str(node.name)):
                    disambig = True
            elif isinstance(node, (Comment, Argument)):
                continue
            elif isinstance(node, HTMLEntity):
                parts.append(node.normalize())
            elif isinstance(node, Wikilink):
                target = str(node.title).strip()
                ns = target.split(":", 1)[0].strip().lower() if ":" in target else ""
                if ns in _DROP_LINK_NS:
                    continue
                if node.text is not None:
                    parts.append(render(node.text.nodes))
                elif not _INTERLANG_RE.match(target):
                    parts.append(render(node.title.nodes))
            elif isinstance(node, ExternalLink):
                if node.title is not None:
                    parts.append(render(node.title.nodes))
            elif isinstance(node, Tag):
                tag = str(node.tag).strip().lower()
                if tag in _DROP_CONTENT_TAGS or tag == "table" or node.wiki_markup == "{|":
                    continue
                if tag in ("br", "hr"):
                    parts.append("\n")
                elif node.contents is not None:
                    parts.append(render(node.contents.nodes))
            elif isinstance(node, Heading):
                # WikiExtractor's heading shape ("생애."), so both readers give the same kind of text.
                head = render(node.title.nodes).strip()
                if head and head[-1] not in ".?!":
                    head += "."
                parts.append("\n" + head + "\n")
        return "".join(parts)

    code = mwparserfromhell.parse(wikitext)
    # Cut reference/link-list sections before rendering: a heading decides what follows it.
    kept: list[Any] = []
    skip_level = 0
    for node in code.nodes:
        if isinstance(node, Heading):
            name = node.title.strip_code().strip().lower()
            if skip_level and node.level > skip_level:
                continue
            skip_level = node.level if name in _SKIP_SECTIONS else 0
            if skip_level:
                continue
        elif skip_level:
            if isinstance(node, Template) and _is_disambig_template(str(node.name)):
                disambig = True
            continue
        kept.append(node)
    text = render(kept)
    lines = []
    for line in clean_wiki_text(text, unescape=False).split("\n"):
        # Leftover list/indent markers at the start of a line carry no meaning in plain text.
        line = line.lstrip("*#:; ").strip()
        if line:
            lines.append(line)
    return "\n".join(lines), disambig


# ---------------------------------------------------------------------------------------------------------
# Format detection
# ---------------------------------------------------------------------------------------------------------

FORMATS = ("wikiextractor", "jsonl", "xml")


def detect_format(path: Path) -> str:
    """Pick a reader from the path alone, so a CLI needs no format flag in the usual cases."""
    path = Path(path)
    name = path.name.lower()
    if path.is_dir() or _WIKIEXTRACTOR_NAME_RE.match(path.name):
        return "wikiextractor"
    if name.endswith((".jsonl", ".jsonl.bz2")):
        return "jsonl"
    if name.endswith((".xml", ".xml.bz2")):
        return "xml"
    raise UserInputError(
        f"{path}: cannot tell the Wikipedia format (expected a WikiExtractor folder or wiki_NN file, "
        "*.jsonl, or *.xml / *.xml.bz2); pass fmt= one of " + ", ".join(FORMATS)
    )


def read_wiki(
    path: Path, fmt: str = "auto", *, source: str = "kowiki", stats: ReadStats | None = None
) -> Iterator[WikiPage]:
    """Read any supported Wikipedia export; ``fmt='auto'`` detects it from the path."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "wikiextractor":
        return read_wikiextractor(path, source=source, stats=stats)
    if fmt == "jsonl":
        return read_jsonl(path, source=source, stats=stats)
    if fmt == "xml":
        return read_xml_dump(path, source=source, stats=stats)
    raise UserInputError(f"unknown Wikipedia format {fmt!r}; expected auto or one of " + ", ".join(FORMATS))
