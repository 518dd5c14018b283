"""The fusion registry: every hybrid fusion method kret knows, by name.

Adding a method is one module (a ``FusionMethod`` subclass) and one line in ``_METHODS``; settings
validation, the CLI's ``--fusion`` choices, ``SearchOptions``, the LangChain retriever and the stores all
read this registry, so nothing else changes.
"""

from __future__ import annotations

from kret.engine.fusion.adaptive import Adaptive
from kret.engine.fusion.base import BranchList, FusionInput, FusionMethod, QdrantFusion, ranked
from kret.engine.fusion.dbsf import Dbsf
from kret.engine.fusion.rrf import Rrf
from kret.errors import UserInputError

__all__ = [
    "DEFAULT_FUSION",
    "BranchList",
    "FusionInput",
    "FusionMethod",
    "QdrantFusion",
    "fusion_names",
    "get_fusion",
    "ranked",
]

#: What hybrid search uses when neither the caller, the settings nor the collection's calibration say
#: otherwise. The evidence for it is bench/README.md §2b and §2e.
DEFAULT_FUSION = "dbsf"

_METHODS: dict[str, FusionMethod] = {m.name: m for m in (Dbsf(), Rrf(), Adaptive())}


def fusion_names() -> tuple[str, ...]:
    """Registered method names, in a stable order (the CLI's choices)."""
    return tuple(_METHODS)


def get_fusion(name: str) -> FusionMethod:
    try:
        return _METHODS[name]
    except KeyError:
        raise UserInputError(f"unknown fusion {name!r} (choose {', '.join(fusion_names())})") from None
