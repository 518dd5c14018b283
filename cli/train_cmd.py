"""``kret train``: adapt the embedding model (pre-training on Wikipedia pairs, hard-negative fine-tuning)."""

from __future__ import annotations

import click

from kret.cli.common import CONTEXT
from kret.cli.train_finetune_cmd import finetune_cmd
from kret.cli.train_pretrain_cmd import pretrain_cmd


class _TrainGroup(click.Group):
    """Remembers whether help was asked for: the group callback runs before a subcommand parses --help."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["kret.train.help"] = any(arg in ("-h", "--help") for arg in args)
        if args and args[0] == "--mine-negatives":  # `kret train --mine-negatives ...`: the finetune command
            args = ["finetune", *args]
        return super().parse_args(ctx, args)


@click.group("train", cls=_TrainGroup, context_settings=CONTEXT)
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


train.add_command(pretrain_cmd)
train.add_command(finetune_cmd)
