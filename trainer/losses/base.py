"""What a training loss is to kret: a name for the lineage, its memory traits, and how to build it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from kret.engine.models import ModelInfo

__all__ = ["LossContext", "TrainingLoss"]


@dataclass(frozen=True)
class LossContext:
    """Everything a loss may need besides the model being trained."""

    base: ModelInfo  # the starting point: a guided loss loads it as its frozen guide
    temperature: float  # InfoNCE temperature; sentence-transformers' ``scale`` is its inverse
    mini_batch: int | None  # texts per forward/backward of the cached (GradCache) form; None = the plain loss
    device: str | None  # where this process trains (its own GPU under torchrun)
    gather: bool  # share in-batch negatives across processes (DDP)


class TrainingLoss(ABC):
    """One contrastive loss. A new loss is one module with a subclass plus one entry in ``LOSSES``."""

    #: sentence-transformers' class name of the plain form; the cached form is ``"Cached" + name``.
    name: str
    #: one line for ``--help``
    help: str
    #: keeps a frozen copy of the base model next to the trained one (4 more bytes per parameter)
    guided: bool = False

    def needs_cache(self, n_negative_columns: int) -> bool:
        """Whether only the cached form can take rows with this many hard-negative columns."""
        return False

    def display_name(self, mini_batch: int | None) -> str:
        return ("Cached" + self.name) if mini_batch else self.name

    @abstractmethod
    def build(self, model: Any, ctx: LossContext) -> Any:
        """The sentence-transformers loss module (cached when ``ctx.mini_batch`` is set)."""
