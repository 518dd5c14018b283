"""Turn files on disk into :class:`Document` records, one format per module.

``registry`` lists the formats (a new one is a module here plus one entry there); ``discovery`` expands
the user's paths; ``core`` loads one file and reports what it left out; ``encodings`` decodes text files.
Heavy parsers (pypdf, python-docx, BeautifulSoup, olefile) are imported lazily inside the format modules,
so importing the indexer stays cheap for commands that never read such a file.
"""

from __future__ import annotations

from kret.indexer.loaders.core import load_file, load_file_report, skipped_entries
from kret.indexer.loaders.discovery import discover
from kret.indexer.loaders.encodings import decode_text
from kret.indexer.loaders.hwp import (
    HWPTAG_PARA_TEXT,
    decode_hwp_para_text,
    hwp_section_paragraphs,
    iter_hwp_records,
)
from kret.indexer.loaders.hwpx import hwpx_paragraphs
from kret.indexer.loaders.jsonl import JSONL_ID_KEYS, JSONL_TEXT_KEYS
from kret.indexer.loaders.registry import (
    EXTRACTORS as _EXTRACTORS,  # noqa: F401 - the dict tests swap a reader in
)
from kret.indexer.loaders.registry import (
    FORMATS,
    SUPPORTED_SUFFIXES,
    Format,
    canonical_source_type,
    source_types,
)

__all__ = [
    "FORMATS",
    "HWPTAG_PARA_TEXT",
    "JSONL_ID_KEYS",
    "JSONL_TEXT_KEYS",
    "SUPPORTED_SUFFIXES",
    "Format",
    "canonical_source_type",
    "decode_hwp_para_text",
    "decode_text",
    "discover",
    "hwp_section_paragraphs",
    "hwpx_paragraphs",
    "iter_hwp_records",
    "load_file",
    "load_file_report",
    "skipped_entries",
    "source_types",
]
