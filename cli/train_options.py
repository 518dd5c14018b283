"""Options both trainers share (`kret train pretrain`, `kret train finetune`): one definition each."""

from __future__ import annotations

import click

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
            "--save-minutes",
            type=click.FloatRange(0, min_open=True),
            default=15.0,
            show_default=True,
            help="Also checkpoint when N minutes passed since the last checkpoint, so --resume after an "
            "interrupt repeats at most that much (a CPU step can take a minute).",
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
