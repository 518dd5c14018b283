"""HTML (``.html``, ``.htm``): the DOM flattened to text, block elements on their own lines, headings as ``#``
lines; scripts, styles and navigation dropped. BeautifulSoup is imported lazily.
"""

from __future__ import annotations

import re
from typing import Any

from kret.indexer.loaders.encodings import decode_text, html_declared_encoding

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


def extract(data: bytes) -> tuple[str, str, list[str]]:
    from bs4 import BeautifulSoup

    problems: list[str] = []
    soup = BeautifulSoup(decode_text(data, html_declared_encoding(data), problems), "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    if not title:
        h1 = soup.find("h1")
        title = h1.get_text(" ", strip=True) if h1 else ""
    return title, _html_to_text(soup), problems


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
