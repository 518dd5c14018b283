"""``kret train``: adapt the embedding model (pre-training on Wikipedia pairs, hard-negative fine-tuning)."""

from __future__ import annotations

import importlib

from kret.cli.main import CONTEXT, cli


@cli.group("train", context_settings=CONTEXT)
def train() -> None:
    """Train new model versions; each lands in the registry with its lineage (`kret models list`).

    \b
      kret train pretrain --wiki kowiki/ --max-pairs 20000      # KoE5-PT recipe: title -> body, in-batch negatives
      kret train finetune --mine-negatives -c docs --queries q.jsonl   # hard negatives mined from your index
    """


for _mod in ("kret.cli.train_pretrain_cmd", "kret.cli.train_finetune_cmd"):
    try:
        importlib.import_module(_mod)
    except ModuleNotFoundError as exc:  # a command module not written yet
        if exc.name != _mod:
            raise
