"""Markdown (``.md``, ``.markdown``): kept mostly as is, headings normalised to ``#`` lines for the chunker."""

from __future__ import annotations

import re

from kret.indexer.clean import clean_text
from kret.indexer.loaders.encodings import decode_text

_FRONT_MATTER = re.compile(r"\A(---|\+\+\+)[ \t]*\n(.*?)\n(?:---|\.\.\.|\+\+\+)[ \t]*(?:\n|\Z)", re.DOTALL)
_FM_TITLE = re.compile(r"""^title\s*[:=]\s*(.+?)\s*$""", re.MULTILINE | re.IGNORECASE)
_ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_NOT_SETEXT_TEXT = re.compile(r"^ {0,3}(#|>|[-*+][ \t]|\d+[.)][ \t]|\||```|~~~)")
_MD_IMAGE = re.compile(r"!\[([^\]\n]*)\]\([^)\n]*\)")
_MD_LINK = re.compile(r"(?<!!)\[([^\]\n]+)\]\([^)\n]*\)")
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)


def extract(data: bytes) -> tuple[str, str, list[str]]:
    """Keep markdown mostly as is: ``#`` lines are what the chunker reads section headings from.

    Setext headings (underlined with ``===``/``---``) are rewritten as ``#`` lines so the chunker sees
    them too; link and image targets are dropped because URLs are noise for both BM25 and embeddings.
    """
    problems: list[str] = []
    text = clean_text(decode_text(data, problems=problems))
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
    return title or _strip_md_inline(first_h1), "\n".join(out), problems


def _strip_md_inline(text: str) -> str:
    text = _MD_LINK.sub(r"\1", _MD_IMAGE.sub(r"\1", text))
    return re.sub(r"[*_`]+", "", text).strip()
