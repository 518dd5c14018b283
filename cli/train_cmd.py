"""``kret train``: adapt the embedding model (pre-training on Wikipedia pairs, hard-negative fine-tuning)."""

from __future__ import annotations

import importlib

import click

from kret.cli.main import CONTEXT, cli


class _TrainGroup(click.Group):
    """Remembers whether help was asked for: the group callback runs before a subcommand parses --help."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["kret.train.help"] = any(arg in ("-h", "--help") for arg in args)
        return super().parse_args(ctx, args)


@cli.group("train", cls=_TrainGroup, context_settings=CONTEXT)
@click.pass_context
def train(ctx: click.Context) -> None:
    """Train new model versions; each lands in the registry with its lineage (`kret models list`).

    \b
      kret train pretrain --wiki kowiki/ --max-pairs 20000      # KoE5-PT recipe: title -> body, in-batch negatives
      kret train finetune --mine-negatives -c docs --queries q.jsonl   # hard negatives mined from your index

    Needs the training extra: pip install 'kret[train]'.
    """
    # Checked here, before any pair building or mining, so a missing extra is one line at once; help for a
    # subcommand (parsed after this callback) still works without it. mwparserfromhell is only needed for
    # XML dumps and says so itself.
    if not ctx.meta.get("kret.train.help"):
        from kret.extras import require_extra

        require_extra(
            "train", f"kret train {ctx.invoked_subcommand or ''}".strip(), ("datasets", "accelerate")
        )


# Shared by both trainers: the loss temperature must match the base model's, whichever command trains it.
temperature_option = click.option(
    "--temperature",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.01,
    show_default=True,
    help="InfoNCE temperature (MNRL scale = 1/T); e5 was trained at 0.01, sentence-transformers defaults to 0.05.",
)


def budget_options(fn):
    """Training length, memory and precision options shared by both trainers (defaults fit a laptop)."""
    from kret.trainer.fit import DEFAULT_TRAIN_SEQ_LENGTH, PRECISIONS
    from kret.trainer.memory import DEFAULT_MEMORY_GB

    options = [
        click.option(
            "--max-seq-length",
            type=click.IntRange(8),
            default=DEFAULT_TRAIN_SEQ_LENGTH,
            show_default=True,
            help="Truncate training texts to N tokens (the saved model keeps its own limit for indexing).",
        ),
        click.option(
            "--memory-gb",
            type=click.FloatRange(0.5),
            default=DEFAULT_MEMORY_GB,
            show_default=True,
            help="Memory target the cached loss's mini-batch is sized for (ignored with --mini-batch-size).",
        ),
        click.option(
            "--no-cache",
            "no_cache",
            is_flag=True,
            help="Plain (uncached) loss: all activations of a batch at once; needs far more memory.",
        ),
        click.option(
            "--precision",
            type=click.Choice(PRECISIONS),
            default="auto",
            show_default=True,
            help="auto: bf16/fp16 on GPU, fp32 on CPU; bf16: autocast also on CPU (pays only with AVX512-BF16/AMX).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


for _mod in ("kret.cli.train_pretrain_cmd", "kret.cli.train_finetune_cmd"):
    try:
        importlib.import_module(_mod)
    except ModuleNotFoundError as exc:  # a command module not written yet
        if exc.name != _mod:
            raise
