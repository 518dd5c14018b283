"""GISTEmbed: InfoNCE where the frozen base model vetoes in-batch negatives it finds too close to the positive.

The guide is the starting point, so the model cannot drift into trusting likely false negatives. It costs a
second copy of the model (the memory sizing counts it) and a guide forward pass per batch. The plain
GISTEmbedLoss takes one hard negative per row; the cached form takes any number.
"""

from __future__ import annotations

from typing import Any

from .base import LossContext, TrainingLoss


class GIST(TrainingLoss):
    name = "GISTEmbedLoss"
    help = "the base model vetoes likely false negatives"
    guided = True

    def needs_cache(self, n_negative_columns: int) -> bool:
        return n_negative_columns > 1

    def build(self, model: Any, ctx: LossContext) -> Any:
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer import losses

        guide = SentenceTransformer(ctx.base.path, device=ctx.device, local_files_only=True)
        guide.eval()
        for p in guide.parameters():
            p.requires_grad_(False)
        if ctx.mini_batch:
            return losses.CachedGISTEmbedLoss(
                model,
                guide,
                temperature=ctx.temperature,
                mini_batch_size=ctx.mini_batch,
                gather_across_devices=ctx.gather,
            )
        return losses.GISTEmbedLoss(
            model, guide, temperature=ctx.temperature, gather_across_devices=ctx.gather
        )
