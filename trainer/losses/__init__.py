"""The registry of training losses: one module and one entry each.

To add a loss: write a module with a ``TrainingLoss`` subclass (its sentence-transformers module, its memory
traits) and add one line to ``LOSSES``. ``--loss`` of both training commands offers every entry; the
memory sizing, the lineage's loss name and the Matryoshka wrapper (``trainer/fit.py``) work for any entry.
Importing this package is cheap (sentence-transformers is imported when a loss is built).
"""

from __future__ import annotations

from kret.errors import UserInputError

from .base import LossContext, TrainingLoss
from .gist import GIST
from .mnrl import MNRL

__all__ = ["DEFAULT_LOSS", "LOSSES", "LossContext", "TrainingLoss", "get_loss", "loss_help"]

LOSSES: dict[str, TrainingLoss] = {
    "mnrl": MNRL(),
    "gist": GIST(),
}
DEFAULT_LOSS = "mnrl"


def get_loss(name: str) -> TrainingLoss:
    try:
        return LOSSES[name]
    except KeyError:
        raise UserInputError(f"unknown loss {name!r}; expected one of {', '.join(LOSSES)}") from None


def loss_help() -> str:
    """``--loss``'s help: every entry with its one line."""
    return "; ".join(f"{name}: {loss.help}" for name, loss in LOSSES.items()) + "."
