"""Which files an indexing run reads: the user's files and folders expanded, hidden entries skipped,
every file once, in a stable order.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from kret.errors import UserInputError
from kret.indexer.loaders.registry import SUPPORTED_SUFFIXES


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
