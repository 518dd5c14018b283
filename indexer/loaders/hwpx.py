"""HWPX (OWPML: a zip of XML parts), Hancom's current format: the text of every paragraph, sections in order."""

from __future__ import annotations

import io
import re
import zipfile
from typing import Any
from xml.etree import ElementTree

from kret.errors import LoaderError

_HWPX_SECTION = re.compile(r"^Contents/section(\d+)\.xml$", re.IGNORECASE)


def _local(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def extract(data: bytes) -> tuple[str, str, list[str]]:
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
