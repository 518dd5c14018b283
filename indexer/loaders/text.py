"""Plain text (``.txt``): decoded, nothing else; cleaning happens in the pipeline for every format."""

from __future__ import annotations

from kret.indexer.loaders.encodings import decode_text


def extract(data: bytes) -> tuple[str, str, list[str]]:
    problems: list[str] = []
    return "", decode_text(data, problems=problems), problems
