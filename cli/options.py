"""The search options every searching command shares (``kret search``, ``kret eval``, ``kret tune``).

One decorator, so a new option or a new fusion method appears in every command at once. The fusion choices
come from the registry (``kret.engine.fusion``). The decorated command receives them as one ``search_opts``
dict, ready for ``Kret.search_options(**search_opts)`` (None = settings / collection).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from kret.engine.fusion import DEFAULT_FUSION, fusion_names, get_fusion
from kret.engine.store import DEFAULT_HNSW_EF
from kret.errors import UserInputError

_KEYS = ("mode", "fusion", "rrf_k", "prefetch_k", "dense_weight", "sparse_weight", "fusion_param", "hnsw_ef")


def parse_fusion_params(items: tuple[str, ...]) -> dict[str, float] | None:
    """``--fusion-param name=value`` pairs as a dict (values must be numbers)."""
    params: dict[str, float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserInputError(f"--fusion-param expects name=value, got {item!r}")
        try:
            params[key.strip()] = float(value)
        except ValueError:
            raise UserInputError(f"--fusion-param {key.strip()} must be a number, got {value!r}") from None
    return params or None


def _fusion_help() -> str:
    lines = "; ".join(f"{n}: {get_fusion(n).summary}" for n in fusion_names())
    return (
        f"How hybrid fuses its branches ({lines}). Default: the collection's calibration "
        f"(`kret tune`), else {DEFAULT_FUSION}."
    )


def search_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the shared search options to a click command; they arrive as ``search_opts``."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        opts = {key: kwargs.pop(key) for key in _KEYS}
        opts["fusion_params"] = parse_fusion_params(opts.pop("fusion_param"))
        return func(*args, search_opts=opts, **kwargs)

    decorators = [
        click.option(
            "--mode", type=click.Choice(["dense", "sparse", "hybrid"]), help="Default: hybrid (settings)."
        ),
        click.option("--fusion", type=click.Choice(list(fusion_names())), help=_fusion_help()),
        click.option("--rrf-k", type=click.IntRange(1), help="RRF's k (with --fusion rrf; default 60)."),
        click.option(
            "--prefetch-k",
            type=click.IntRange(1, 10000),
            help="Candidates per branch before fusion (default 100).",
        ),
        click.option(
            "--dense-weight", type=float, help="RRF weight of the dense branch (with --fusion rrf)."
        ),
        click.option(
            "--sparse-weight", type=float, help="RRF weight of the Kiwi BM25 branch (with --fusion rrf)."
        ),
        click.option(
            "--fusion-param",
            "fusion_param",
            multiple=True,
            metavar="NAME=VALUE",
            help="A parameter of a client-side fusion (e.g. adaptive's bias=0.3); repeatable.",
        ),
        click.option(
            "--hnsw-ef",
            type=click.IntRange(1, 100_000),
            help="Beam width of the dense branch's HNSW search: larger is closer to exact search and slower "
            f"(default {DEFAULT_HNSW_EF}; bench/README.md §2e).",
        ),
    ]
    for decorate in reversed(decorators):
        wrapper = decorate(wrapper)
    return wrapper
