"""kret's optional parts (pip extras) and the one-line error that names the fix when one is missing.

The core (index, search, eval) needs none of them. Each is checked where it is first needed, *before* any
work starts, so ``kret train … `` or ``kret eval … --plot`` without the extra stops at once with the
``pip install`` to run instead of failing minutes later with a ``ModuleNotFoundError`` traceback.

Presence is checked with ``importlib.util.find_spec`` rather than an import: importing ``datasets`` or
``matplotlib`` costs seconds, and ``kret doctor`` lists every extra. A module set to ``None`` in
``sys.modules`` (how tests, and Python itself, mark a module as unavailable) counts as missing.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from kret.errors import MissingExtraError


@dataclass(frozen=True)
class Extra:
    name: str
    modules: tuple[str, ...]  # import names (not distribution names)
    purpose: str

    @property
    def install(self) -> str:
        return f"pip install 'kret[{self.name}]'"


EXTRAS: dict[str, Extra] = {
    "langchain": Extra("langchain", ("langchain_core",), "KretRetriever for LangChain"),
    "train": Extra(
        "train", ("datasets", "accelerate", "mwparserfromhell"), "kret train (and XML wiki dumps)"
    ),
    "plot": Extra("plot", ("matplotlib",), "kret eval --plot, kret eval plot"),
}


def is_installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_modules(extra: str, modules: Sequence[str] | None = None) -> list[str]:
    """The modules of ``extra`` (or just ``modules`` of it) that are not installed."""
    return [m for m in (modules or EXTRAS[extra].modules) if not is_installed(m)]


def require_extra(extra: str, what: str, modules: Sequence[str] | None = None) -> None:
    """Raise :class:`MissingExtraError` naming the ``pip install`` when ``extra`` (or ``modules`` of it) is
    missing; ``what`` names the feature that needs it, e.g. ``"kret train"``."""
    missing = missing_modules(extra, modules)
    if missing:
        raise MissingExtraError(
            f"{what} needs the '{extra}' extra ({', '.join(missing)} not installed): {EXTRAS[extra].install}"
        )
