"""``kret train``: adapt the embedding model (pre-training on Wikipedia pairs, hard-negative fine-tuning)."""

from __future__ import annotations

import importlib

import click

from kret.cli.main import CONTEXT, cli


@cli.group("train", context_settings=CONTEXT)
def train() -> None:
    """Train new model versions; each lands in the registry with its lineage (`kret models list`).

    \b
      kret train pretrain --wiki kowiki/ --max-pairs 20000      # KoE5-PT recipe: title -> body, in-batch negatives
      kret train finetune --mine-negatives -c docs --queries q.jsonl   # hard negatives mined from your index
    """


# Shared by both trainers: the loss temperature must match the base model's, whichever command trains it.
temperature_option = click.option(
    "--temperature",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.01,
    show_default=True,
    help="InfoNCE temperature (MNRL scale = 1/T); e5 was trained at 0.01, sentence-transformers defaults to 0.05.",
)

for _mod in ("kret.cli.train_pretrain_cmd", "kret.cli.train_finetune_cmd"):
    try:
        importlib.import_module(_mod)
    except ModuleNotFoundError as exc:  # a command module not written yet
        if exc.name != _mod:
            raise
