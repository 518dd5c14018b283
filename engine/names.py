"""What a collection name may be: the one rule every backend applies where a name becomes a path or a
Qdrant collection name.

A name is user input (``-c``, the Python API, ``collections show|rm``, ``gc -c``) that ends up in a
filesystem path under ``KRET_HOME/collections`` or in a server-side collection name. Checking it where the
backend turns it into a path (``EdgeBackend._dir``, ``ServerBackend._alias``) means no caller can bypass
it: ``../x``, ``/abs/dir``, ``a/b``, ``.`` and names with NUL or newlines never reach ``os``/``shutil``.
"""

from __future__ import annotations

import re

from kret.errors import CollectionNameError

MAX_NAME_LENGTH = 128
NAME_RULE = (
    f"1-{MAX_NAME_LENGTH} ASCII letters, digits, '-' and '_', not starting with '-' "
    "(no '/', '\\', '.', spaces or other characters)"
)
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")


def collection_name_problem(name: object) -> str | None:
    """Why ``name`` is not a valid collection name, or None when it is (for pydantic validators)."""
    if not isinstance(name, str) or not name:
        return f"collection name {name!r} is empty; a name is {NAME_RULE}"
    if len(name) > MAX_NAME_LENGTH or not _NAME_RE.fullmatch(name):
        return f"collection name {name!r} is not a plain name; a name is {NAME_RULE}"
    return None


def check_collection_name(name: object) -> str:
    """``name`` itself when valid; otherwise a one-line ``CollectionNameError``."""
    problem = collection_name_problem(name)
    if problem is not None:
        raise CollectionNameError(problem)
    assert isinstance(name, str)
    return name
