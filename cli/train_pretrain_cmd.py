"""``kret train pretrain``: KoE5-PT-style contrastive pre-training on Korean Wikipedia title/body pairs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from kret.cli.common import CONTEXT, ProgressView, console, get_kret, print_json
from kret.cli.train_options import budget_options, temperature_option
from kret.errors import UserInputError
from kret.trainer.losses import DEFAULT_LOSS, LOSSES, loss_help


def parse_mix(items: tuple[str, ...]) -> list[tuple[Path, float]]:
    """``FILE:RATIO`` items; the ratio follows the last colon, so paths may contain colons."""
    out = []
    for item in items:
        path, sep, ratio = item.rpartition(":")
        if not sep or not path.strip():
            raise UserInputError(f"--mix expects FILE:RATIO (e.g. s2orc.jsonl:1.0), got {item!r}")
        try:
            value = float(ratio)
        except ValueError:
            raise UserInputError(f"--mix {item!r}: the ratio {ratio!r} is not a number") from None
        if not value > 0 or value == float("inf"):
            raise UserInputError(f"--mix {item!r}: the ratio must be a positive number")
        out.append((Path(path), value))
    return out


def parse_dims(text: str | None) -> list[int] | None:
    """``384,256,128,64`` -> distinct positive integers, largest first."""
    if text is None or not text.strip():
        return None
    try:
        dims = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserInputError(
            f"--matryoshka-dims expects comma-separated integers (e.g. 384,256,128,64), got {text!r}"
        ) from None
    if not dims or any(d < 1 for d in dims) or len(set(dims)) != len(dims):
        raise UserInputError(f"--matryoshka-dims must be distinct positive integers, got {text!r}")
    return sorted(dims, reverse=True)


class TrainProgress(ProgressView):
    """Rich rendering of the trainer's progress: pair building, the per-filter table, then training with
    loss and pairs/s."""

    def __init__(self, enabled: bool = True) -> None:
        super().__init__(enabled)
        self.pairs: dict[str, Any] | None = None

    def __call__(
        self,
        stage: str | None = None,
        total: int | None = None,
        advance: int = 0,
        note: str | None = None,
        pairs: dict[str, Any] | None = None,
        loss: float | None = None,
        rate: float | None = None,
        completed: int | None = None,
        **_: Any,
    ) -> None:
        if note:
            if self.enabled:
                self.progress.console.print(f"[dim]{note}[/]", highlight=False)
            return
        if pairs is not None:
            self.pairs = pairs
            if self.enabled:
                self.progress.console.print(pair_table(pairs))
            return
        if stage is None:
            return
        label = {"pairs": "building pairs", "train": "training"}.get(stage, stage)
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(label, total=total, extra="")
        task = self.tasks[stage]
        if total is not None:
            self.progress.update(task, total=total)
        if completed is not None:
            self.progress.update(task, completed=completed)
        extra = ""
        if stage == "train":
            parts = []
            if loss is not None:
                parts.append(f"loss {loss:.4f}")
            if rate is not None:
                parts.append(f"{rate:.1f} pairs/s")
            extra = ", ".join(parts)
        elif stage == "pairs":
            extra = "pairs"
        self.progress.update(task, advance=advance, **({"extra": extra} if extra or stage != "train" else {}))


def pair_table(info: dict[str, Any]) -> Table:
    """Where the pages went: one row per filter, then mixing and consistency."""
    stats, counts = info["pair_stats"], info["pair_counts"]
    table = Table(title="training pairs", show_header=True)
    table.add_column("step")
    table.add_column("pages / pairs", justify="right")
    table.add_row("pages read", f"{stats['pages_read']:,}")
    for name, n in stats["removed"].items():
        table.add_row(f"  removed: {name.replace('_', ' ')}", f"-{n:,}" if n else "0")
    table.add_row("title/body pairs kept", f"{stats['kept']:,}")
    table.add_row("  (positive cut to the token budget)", f"{stats['truncated']:,}")
    for entry in info.get("mix") or []:
        table.add_row(
            f"mixed in {Path(entry['path']).name} (ratio {entry['ratio']:g})", f"+{entry['used']:,}"
        )
        if entry.get("wiki_dropped_for_ratio"):
            table.add_row("  wiki pairs dropped to hold the ratio", f"-{entry['wiki_dropped_for_ratio']:,}")
    if info.get("consistency"):
        c = info["consistency"]
        table.add_row(f"consistency filter (top-{c['top_k']} of {c['sample_size']})", f"-{c['dropped']:,}")
    table.add_row("[bold]pairs trained on[/]", f"[bold]{counts['final']:,}[/]")
    return table


@click.command("pretrain", context_settings=CONTEXT)
@click.option(
    "--wiki",
    required=True,
    type=click.Path(),
    help="kowiki export: WikiExtractor folder or wiki_NN(.bz2) file, *.jsonl, or *.xml(.bz2) dump.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "wikiextractor", "jsonl", "xml"]),
    default="auto",
    show_default=True,
    help="Format of --wiki (auto: from the path).",
)
@click.option(
    "--base",
    default="default",
    show_default=True,
    help="Model to start from: 'default', a registered version, a folder or a hub name.",
)
@click.option(
    "--max-pairs",
    type=click.IntRange(2),
    help="Stop after this many title/body pairs (default: the whole export).",
)
@click.option(
    "--max-body-tokens",
    type=click.IntRange(8),
    help="Cut positives to this many tokens (default: the model's max length). Smaller = faster steps.",
)
@click.option(
    "--batch-size",
    default=32,
    show_default=True,
    type=click.IntRange(2),
    help="Pairs per step per device; every other pair in the batch is a negative.",
)
@click.option(
    "--mini-batch-size",
    type=click.IntRange(1),
    help="Use the cached (GradCache) loss: big --batch-size, memory of this mini-batch.",
)
@click.option(
    "--lr",
    default=1e-5,
    show_default=True,
    type=float,
    help="Peak learning rate (linear warm-up, then linear decay).",
)
@temperature_option
@budget_options
@click.option(
    "--epochs",
    default=1.0,
    show_default=True,
    type=float,
    help="Passes over the pairs (ignored with --max-steps).",
)
@click.option("--max-steps", type=click.IntRange(1), help="Step budget; overrides --epochs.")
@click.option(
    "--warmup-ratio", default=0.1, show_default=True, type=float, help="Share of the steps spent warming up."
)
@click.option(
    "--matryoshka-dims", help="Also train truncated embeddings, e.g. 384,256,128,64 (MatryoshkaLoss)."
)
@click.option(
    "--loss",
    "loss_name",
    type=click.Choice(list(LOSSES)),
    default=DEFAULT_LOSS,
    show_default=True,
    help=loss_help(),
)
@click.option(
    "--mix",
    "mix",
    multiple=True,
    metavar="FILE:RATIO",
    help="Mix in another query/positive JSONL at RATIO to the wiki pairs (1.0 = KoE5-PT's 1:1); repeatable.",
)
@click.option(
    "--consistency-top-k",
    type=click.IntRange(1),
    help="E5/KaLM consistency filter: keep a pair only if the base model ranks its positive in the top K.",
)
@click.option(
    "--consistency-sample",
    default=1000,
    show_default=True,
    type=click.IntRange(1),
    help="Random passages each pair is ranked against by the consistency filter.",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=int,
    help="Seed for mixing, filtering, batching and initialisation.",
)
@click.option(
    "--save-steps",
    default=200,
    show_default=True,
    type=click.IntRange(1),
    help="Checkpoint every N steps (the newest two are kept).",
)
@click.option(
    "--run-name",
    help="Name of the run folder under KRET_HOME/runs (default: a timestamp); needed by --resume.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run --run-name from its newest checkpoint (its pairs file is reused).",
)
@click.option(
    "--keep-checkpoints", is_flag=True, help="Keep the run's checkpoints after the model is registered."
)
@click.option(
    "--set-default", is_flag=True, help="Make the new version the default model for new collections."
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the result as one JSON object (no progress display)."
)
@click.pass_context
def pretrain_cmd(
    ctx: click.Context,
    wiki: str,
    fmt: str,
    base: str,
    max_pairs: int | None,
    max_body_tokens: int | None,
    batch_size: int,
    mini_batch_size: int | None,
    lr: float,
    temperature: float,
    max_seq_length: int,
    memory_gb: float,
    save_minutes: float,
    no_cache: bool,
    precision: str,
    epochs: float,
    max_steps: int | None,
    warmup_ratio: float,
    matryoshka_dims: str | None,
    loss_name: str,
    mix: tuple[str, ...],
    consistency_top_k: int | None,
    consistency_sample: int,
    seed: int,
    save_steps: int,
    run_name: str | None,
    resume: bool,
    keep_checkpoints: bool,
    set_default: bool,
    as_json: bool,
) -> None:
    """Pre-train the embedding model on Korean Wikipedia title -> body pairs (the KoE5-PT recipe).

    Each article's title is the query and its leading text (cut to the model's token budget) the positive;
    the other pairs of the batch are the negatives. Disambiguation, list, near-empty and duplicate pages
    are filtered out first (the table shows how many each filter removed). The trained model is registered
    as a new version `pt-…` with its full lineage (data hashes, pair counts, parameters, loss).

    \b
    Examples:
      # a small CPU run (~15 min on 2 busy cores): 2,000 pairs, 60 steps of 16, positives cut to 128 tokens
      kret train pretrain --wiki kowiki/text --max-pairs 2000 --max-body-tokens 128 --max-steps 60 --batch-size 16
      # KoE5-PT on GPUs: 1:1 mix, big batch through the cached loss, one process per GPU (DDP)
      torchrun --nproc-per-node 8 --no-python kret train pretrain --wiki kowiki/text \\
          --mix s2orc.jsonl:1.0 --batch-size 4096 --mini-batch-size 256 --run-name koe5pt
      # continue an interrupted run
      kret train pretrain --wiki kowiki/text --run-name koe5pt --resume

    \b
    Then evaluate and adopt it:
      kret eval DATASET --model pt-YYYYMMDD-HHMMSS
      kret models default pt-YYYYMMDD-HHMMSS
    """
    from kret.trainer.fit import FitConfig, is_main_process
    from kret.trainer.pretrain import pretrain

    mix_sources = parse_mix(mix)
    dims = parse_dims(matryoshka_dims)
    if not 0 <= warmup_ratio < 1:
        raise UserInputError(f"--warmup-ratio must be in [0, 1), got {warmup_ratio}")
    if not lr > 0:
        raise UserInputError(f"--lr must be positive, got {lr}")
    if max_steps is None and not epochs > 0:
        raise UserInputError(f"--epochs must be positive, got {epochs}")
    if resume and not run_name:
        raise UserInputError("--resume needs --run-name (the run to continue; see KRET_HOME/runs)")
    cfg = FitConfig(
        batch_size=batch_size,
        mini_batch_size=mini_batch_size,
        lr=lr,
        temperature=temperature,
        max_seq_length=max_seq_length,
        memory_gb=memory_gb,
        save_minutes=save_minutes,
        cached=not no_cache,
        precision=precision,
        epochs=epochs,
        max_steps=max_steps,
        warmup_ratio=warmup_ratio,
        matryoshka_dims=dims,
        loss=loss_name,
        seed=seed,
        save_steps=save_steps,
        resume=resume,
    )
    kr = get_kret(ctx)
    main_rank = is_main_process()
    started = time.perf_counter()
    with TrainProgress(enabled=not as_json and main_rank) as progress:
        info = pretrain(
            kr,
            Path(wiki),
            base=base,
            max_pairs=max_pairs,
            fit_cfg=cfg,
            mix=mix_sources,
            consistency=consistency_top_k,
            fmt=fmt,
            seed=seed,
            run_name=run_name,
            progress=progress,
            set_default=set_default,
            max_body_tokens=max_body_tokens,
            consistency_sample=consistency_sample,
            keep_checkpoints=keep_checkpoints,
        )
    if not main_rank:
        return
    lineage = info.lineage
    train_stats = lineage.get("train", {})
    if as_json:
        print_json(
            {
                "version": info.name,
                "path": info.path,
                "fingerprint": info.fingerprint,
                "default": set_default,
                "pair_counts": lineage.get("pair_counts"),
                "pair_stats": lineage.get("pair_stats"),
                "train": train_stats,
                "seconds": round(time.perf_counter() - started, 2),
            }
        )
        return
    loss_first, loss_last = train_stats.get("loss_first"), train_stats.get("loss_last")
    loss_txt = (
        f"loss {loss_first:.4f} -> {loss_last:.4f}"
        if loss_first is not None and loss_last is not None
        else ""
    )
    console.print(
        f"[green]done[/]: new model version [bold]{info.name}[/] ({info.fingerprint[:12]}) — "
        f"{train_stats.get('steps')} steps, {train_stats.get('examples_per_s')} pairs/s, {loss_txt}, "
        f"{time.perf_counter() - started:.0f}s\n  at {info.path}",
        highlight=False,
    )
    default_hint = (
        ""
        if set_default
        else f"\n  kret models default {info.name}    # make it the default for new collections"
    )
    console.print(
        f"next:\n  kret eval DATASET --model {info.name}    # score it against the base model's report{default_hint}",
        highlight=False,
    )
