"""``kret train finetune --mine-negatives``: hard-negative fine-tuning on a collection, with an eval gate.

Also reachable as ``kret train --mine-negatives ...`` (the spelling of the issue): the ``train`` group
forwards to ``finetune`` when its first argument is ``--mine-negatives``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from kret.cli.common import CONTEXT, ProgressView, console, get_kret, out, print_json
from kret.cli.train_options import budget_options, temperature_option
from kret.errors import UserInputError
from kret.trainer.losses import DEFAULT_LOSS, LOSSES, loss_help
from kret.trainer.mining_rules import DEFAULT_RULES, RULES


def _parse_range(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition(":")
    try:
        a, b = int(lo), int(hi)
    except ValueError:
        raise UserInputError(f"--range expects MIN:MAX ranks such as 3:50, got {text!r}") from None
    if not sep or a < 1 or b < a:
        raise UserInputError(f"--range expects MIN:MAX with 1 <= MIN <= MAX, got {text!r}")
    return a, b


def _parse_rules(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if names == ("none",):
        return ()
    unknown = [n for n in names if n not in RULES]
    if unknown:
        raise UserInputError(
            f"--rules: unknown rule {', '.join(unknown)} (choose from {', '.join(RULES)}, or none)"
        )
    return names


class _Progress(ProgressView):
    """Mining and training bars (training shows the loss and pairs/s), notes, and the mining table."""

    def __init__(self, enabled: bool) -> None:
        super().__init__(enabled)

    def __call__(
        self,
        stage: str | None = None,
        total: int | None = None,
        advance: int = 0,
        note: str | None = None,
        mining: Any = None,
        loss: float | None = None,
        rate: float | None = None,
        completed: int | None = None,
        **_: Any,
    ) -> None:
        if not self.enabled:
            return
        if note:
            self.progress.console.print(f"[dim]{note}[/]", highlight=False)
            return
        if mining is not None:
            self.progress.console.print(mining_table(mining.stats.as_dict(), mining.params.n_negatives))
            return
        if stage is None:
            return
        label = {"mine": "mining negatives", "train": "training", "query": "running queries"}.get(
            stage, stage
        )
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(label, total=total, extra="")
        task = self.tasks[stage]
        extra = []
        if loss is not None:
            extra.append(f"loss {loss:.4f}")
        if rate is not None:
            extra.append(f"{rate:.1f} pairs/s")
        fields: dict[str, Any] = {"advance": advance}
        if total is not None:
            fields["total"] = total
            if advance == 0 and completed is None:  # a stage starting again (the gate evaluates twice)
                completed = 0
        if completed is not None:
            fields["completed"] = completed
        if extra:
            fields["extra"] = ", ".join(extra)
        self.progress.update(task, **fields)


_RULE_LABELS = {
    "margin": "margin × positive score",
    "rescaled": "rescaled score (random = 0, positive = 1) too high",
    "rank_guard": "BM25 and dense both rank it above the positive",
    "consistency": "ranking consistency (positive not in top k)",
}


def mining_table(stats: dict[str, Any], n: int) -> Table:
    """Where the candidates and queries went, stage by stage, with one line per mining rule."""
    table = Table(title="hard-negative mining", show_header=True)
    table.add_column("stage")
    table.add_column("count", justify="right")
    dropped = stats.get("dropped_by_rule") or (
        {"consistency": stats["dropped_consistency"]} if stats.get("dropped_consistency") else {}
    )
    removed = stats.get("removed_by_rule") or (
        {"margin": stats["removed_margin"]} if stats.get("removed_margin") else {}
    )
    rows: list[tuple[str, int]] = [
        ("queries in", stats.get("queries_in", 0)),
        ("  dropped: positive not in collection", stats.get("dropped_no_positive", 0)),
        *[(f"  dropped by rule {k}: {_RULE_LABELS.get(k, k)}", v) for k, v in dropped.items()],
        (f"  dropped: fewer than {n} negatives", stats.get("queries_short", 0)),
        ("  queries kept (training rows)", stats.get("queries_kept", 0)),
        ("candidates seen", stats.get("candidates_seen", 0)),
        ("  removed: held-out / dev document", stats.get("removed_heldout", 0)),
        ("  removed: same document as positive", stats.get("removed_same_document", 0)),
        ("  removed: outside rank range", stats.get("removed_range", 0)),
        *[(f"  removed by rule {k}: {_RULE_LABELS.get(k, k)}", v) for k, v in removed.items()],
        ("  not selected (beyond n)", stats.get("not_selected", 0)),
        ("  lost with short queries", stats.get("negatives_of_short_queries", 0)),
        ("  kept negatives", stats.get("kept_negatives", 0)),
        ("queries with a candidate removed by the rules", stats.get("queries_touched_by_rules", 0)),
        (
            "queries whose every in-range candidate the rules removed",
            stats.get("queries_emptied_by_rules", 0),
        ),
    ]
    for label, value in rows:
        table.add_row(label, f"{value:,}")
    return table


@click.command("finetune", context_settings=CONTEXT)
@click.option(
    "--mine-negatives", is_flag=True, help="Mine hard negatives from the collection (the method; implied)."
)
@click.option("-c", "--collection", required=True, help="Collection to mine from; its model is the parent.")
@click.option(
    "--queries", "queries_file", type=click.Path(dir_okay=False), help="JSONL/TSV of query -> positive."
)
@click.option(
    "--self-supervised", type=click.Choice(["titles", "ict"]), help="Queries read from the collection."
)
@click.option("--max-queries", type=click.IntRange(2), help="Use at most N queries (seeded sample).")
@click.option("--mode", type=click.Choice(["dense", "hybrid"]), default="dense", show_default=True)
@click.option(
    "--range", "rank_range", default="3:50", show_default=True, help="Ranks MIN:MAX negatives come from."
)
@click.option(
    "--rules",
    default=",".join(DEFAULT_RULES),
    show_default=True,
    help=f"Mining rules, applied in order (comma-separated; 'none' for only the fixed ones): {', '.join(RULES)}.",
)
@click.option(
    "--rescaled-max",
    type=click.FloatRange(0, 10, min_open=True),
    default=0.95,
    show_default=True,
    help="Rule rescaled: drop candidates above this on the query's random (0) -> positive (1) score scale.",
)
@click.option(
    "--margin",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.95,
    show_default=True,
    help="Rule margin: drop candidates scoring above MARGIN x the positive's dense score.",
)
@click.option("--negatives", "n_negatives", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option(
    "--sample", is_flag=True, help="Sample the negatives among the survivors instead of the top ones."
)
@click.option(
    "--consistency-top-k",
    type=click.IntRange(1, 1000),
    help="Drop queries whose positive is not in the top K.",
)
@click.option(
    "--heldout",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.1,
    show_default=True,
    help="Fraction of queries (whole groups, see --heldout-by) held out for the gate.",
)
@click.option(
    "--heldout-by",
    default="doc",
    show_default=True,
    help="Group the split keeps together: doc, title (an article's paragraphs) or a document metadata key.",
)
@click.option(
    "--dev",
    "dev_fraction",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.1,
    show_default=True,
    help="Fraction of the remaining groups set aside as a dev set (for choosing settings; not trained on).",
)
@click.option(
    "--gate-mode",
    type=click.Choice(["dense", "hybrid", "both"]),
    default="both",
    show_default=True,
    help="Search mode(s) the gate compares in; with both, the candidate must win in each.",
)
@click.option(
    "--loss", type=click.Choice(list(LOSSES)), default=DEFAULT_LOSS, show_default=True, help=loss_help()
)
@click.option("--batch-size", type=click.IntRange(2), default=32, show_default=True)
@click.option(
    "--mini-batch-size", type=click.IntRange(1), help="Cached (GradCache) loss with this mini-batch."
)
@click.option("--lr", type=float, default=1e-5, show_default=True)
@temperature_option
@budget_options
@click.option("--epochs", type=float, default=1.0, show_default=True)
@click.option(
    "--max-steps", type=click.IntRange(1), help="Stop after N optimizer steps (overrides --epochs)."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--eval",
    "eval_datasets",
    multiple=True,
    type=click.Path(file_okay=False),
    help="BEIR dataset the candidate must not get worse on; repeatable.",
)
@click.option("--metric", default="ndcg@10", show_default=True, help="Metric the gate decides on.")
@click.option(
    "--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05, show_default=True
)
@click.option(
    "--no-gate", is_flag=True, help="Register the model without evaluating it (never promoted); gate later."
)
@click.option("--force", is_flag=True, help="Make the new model the default even if the gate fails.")
@click.option("--run-name", help="Folder under KRET_HOME/runs (default ft-<collection>-<time>).")
@click.option("--resume", is_flag=True, help="Continue the run --run-name: same mined set, last checkpoint.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.pass_context
def finetune_cmd(
    ctx,
    mine_negatives,  # noqa: ARG001 - the only method; accepted for the documented spelling
    collection,
    queries_file,
    self_supervised,
    max_queries,
    mode,
    rank_range,
    rules,
    rescaled_max,
    margin,
    n_negatives,
    sample,
    consistency_top_k,
    heldout,
    heldout_by,
    dev_fraction,
    gate_mode,
    loss,
    batch_size,
    mini_batch_size,
    lr,
    temperature,
    max_seq_length,
    memory_gb,
    save_minutes,
    no_cache,
    precision,
    epochs,
    max_steps,
    seed,
    eval_datasets,
    metric,
    alpha,
    no_gate,
    force,
    run_name,
    resume,
    as_json,
) -> None:
    """Fine-tune a collection's model on hard negatives mined from the collection itself.

    \b
    Queries: --queries FILE (JSONL: query + positive_id|doc_id|path|positive; or TSV query<TAB>positive),
    or --self-supervised titles|ict. A held-out part (--heldout, split by document) is never trained on:
    the gate promotes the new model to default only if it beats the parent there beyond the 95% CI and
    is not significantly worse on any --eval dataset (or with --force). Re-indexing is a separate step:
      kret train finetune --mine-negatives -c docs --queries q.jsonl --eval ../data/korquad-dev
      kret reindex --collection docs --model ft-YYYYMMDD-HHMMSS
    """
    from kret.trainer.finetune import finetune
    from kret.trainer.fit import FitConfig

    if resume and not run_name:
        raise UserInputError("--resume needs --run-name (the run to continue)")
    range_min, range_max = _parse_range(rank_range)
    kr = get_kret(ctx)
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
        loss=loss,
        seed=seed,
        resume=resume,
    )
    started = time.perf_counter()
    with _Progress(enabled=not as_json) as progress:
        result = finetune(
            kr,
            collection=collection,
            queries_file=Path(queries_file) if queries_file else None,
            self_supervised=self_supervised,
            mode=mode,
            range_min=range_min,
            range_max=range_max,
            margin=margin,
            n_negatives=n_negatives,
            strategy="sample" if sample else "top",
            consistency_top_k=consistency_top_k,
            heldout_fraction=heldout,
            heldout_by=heldout_by,
            dev_fraction=dev_fraction,
            rules=_parse_rules(rules),
            rescaled_max=rescaled_max,
            gate_mode=gate_mode,
            run_gate=not no_gate,
            max_queries=max_queries,
            fit_cfg=cfg,
            eval_datasets=[Path(p) for p in eval_datasets],
            metric=metric,
            alpha=alpha,
            force=force,
            run_name=run_name,
            seed=seed,
            progress=progress,
        )
    if as_json:
        print_json({**result.as_dict(), "seconds": round(time.perf_counter() - started, 2)})
        return
    _print_result(result)


def _print_result(result: Any) -> None:
    t = result.train_stats
    console.print(
        f"trained {t.get('steps')} steps on {t.get('rows')} rows ({t.get('loss_name')}), "
        f"loss {_fmt(t.get('loss_first'))} → {_fmt(t.get('loss_last'))}, "
        f"{_fmt(t.get('examples_per_s'))} pairs/s",
        highlight=False,
    )
    if result.model is not None:
        console.print(
            f"registered [bold]{result.model.name}[/] (parent {result.parent.short})", highlight=False
        )
    if getattr(result, "dev_dir", None) is not None:
        console.print(
            f"dev set for choosing settings: kret eval {result.dev_dir} --model <version> (not trained on)",
            highlight=False,
        )
    d = result.decision
    if d is None:
        console.print(
            "[yellow]no gate ran (--no-gate, or no held-out queries and no --eval): the default model is unchanged[/]"
        )
        return
    from kret.evaluators.report import render_comparison

    for cmp, r in zip(d.comparisons, d.results, strict=True):
        mode = f", {r.mode}" if r.mode else ""
        console.print(f"[bold]gate, {r.role} set {r.dataset}{mode}[/]", highlight=False)
        render_comparison(cmp, console)  # ends with the verdict line on the gate metric's headline
    style = "green" if d.promoted else "yellow"
    state = "promoted to default" if d.promoted else "not promoted"
    console.print(f"[{style}]{state}[/]: {d.reason}", highlight=False)
    if d.promoted and d.next_command:
        console.print("re-index the collection with it (a separate step):", highlight=False)
        out.print(d.next_command, highlight=False)
    elif d.next_command:
        console.print(
            f"to use it anyway: kret models default {d.candidate} && {d.next_command}", highlight=False
        )


def _fmt(v: Any) -> str:
    return "—" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)
