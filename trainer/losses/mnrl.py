"""InfoNCE with in-batch negatives (MultipleNegativesRankingLoss): KoE5-PT's loss and kret's default.

Every other row's positive (and every mined hard negative) is a negative for a query. The cached form
(GradCache) computes exactly the same loss for a batch whose activations would not fit in memory at once.
"""

from __future__ import annotations

from typing import Any

from .base import LossContext, TrainingLoss


class MNRL(TrainingLoss):
    name = "MultipleNegativesRankingLoss"
    help = "in-batch negatives (InfoNCE)"

    def build(self, model: Any, ctx: LossContext) -> Any:
        from sentence_transformers.sentence_transformer import losses

        if ctx.mini_batch:
            return losses.CachedMultipleNegativesRankingLoss(
                model,
                scale=1 / ctx.temperature,
                mini_batch_size=ctx.mini_batch,
                gather_across_devices=ctx.gather,
            )
        return losses.MultipleNegativesRankingLoss(
            model, scale=1 / ctx.temperature, gather_across_devices=ctx.gather
        )
