"""Loading one file: read its bytes, hand them to its format's reader, and say what was left out.

Readers are forgiving about *content* (legacy encodings, odd markup, a few bad JSONL lines) and strict
about *failure*: anything that goes wrong inside one file becomes a :class:`LoaderError` with a short
reason, so the pipeline records it and carries on with the next file instead of aborting a long run.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from kret.errors import LoaderError
from kret.indexer.clean import clean_text
from kret.indexer.document import Document
from kret.indexer.loaders.common import clean_title, reason
from kret.indexer.loaders.registry import BY_SUFFIX, EXTRACTORS, SUPPORTED_SUFFIXES


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

    fmt = BY_SUFFIX[suffix]
    source_type = fmt.source_type
    rel = _relative_id(path, Path(root))
    base = {"path": str(Path(os.path.abspath(path))), "source_type": source_type, "mtime": mtime}
    if not data:
        return [], ["empty file"]
    try:
        if fmt.load_rows is not None:
            docs, problems = fmt.load_rows(data, rel, base)
            return docs, problems if docs or problems else [fmt.no_text]
        title, text, problems = EXTRACTORS[source_type](data)
        text = clean_text(text)
        if not text:
            return [], problems or [fmt.no_text]
        return [Document(doc_id=rel, text=text, title=clean_title(title), metadata={}, **base)], problems
    except LoaderError:
        raise
    except Exception as exc:  # one bad file must never abort the run
        raise LoaderError(reason(exc)) from exc


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
