"""``kret eval``: evaluate a BEIR dataset end to end, compare two reports, plot reports."""

from __future__ import annotations

from pathlib import Path

import click

from kret.cli.common import CONTEXT, IndexProgress, console, get_kret, out
from kret.cli.options import search_options
from kret.errors import UserInputError


class _DefaultRun(click.Group):
    """`kret eval DATASET` runs an evaluation; `kret eval compare|plot …` are subcommands."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


def _parse_ks(text: str) -> list[int]:
    try:
        ks = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise UserInputError(f"-k expects a comma-separated list of integers, got {text!r}") from None
    if not ks or ks[0] < 1:
        raise UserInputError("-k values must be positive integers")
    return ks


@click.group("eval", cls=_DefaultRun, context_settings=CONTEXT)
def eval_group() -> None:
    """Score retrieval end to end on a BEIR dataset (NDCG, Recall, Precision, MRR, MAP, Hit rate, F1).

    \b
      kret eval DATASET [--mode hybrid] [-k 1,3,5,10] [--out report.json] [--plot curves.png]
      kret eval compare A.json B.json     # paired test: does B beat A?
      kret eval plot A.json B.json --out curves.png
    """


@eval_group.command("run", context_settings=CONTEXT)
@click.argument("dataset", type=click.Path(file_okay=False))
@click.option("--split", default="test", show_default=True, help="qrels/<split>.tsv")
@click.option("-m", "--model", help="Model: 'default', a version, a folder or a hub name.")
@search_options
@click.option("-k", "ks", default="1,3,5,10", show_default=True, help="Cut-offs, comma-separated.")
@click.option("--max-queries", type=click.IntRange(1), help="Evaluate only the first N queries (smoke runs).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="Write the JSON report here.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Write metric@k curves (PNG).")
@click.pass_context
def eval_run(
    ctx,
    dataset,
    split,
    model,
    search_opts,
    ks,
    max_queries,
    out_path,
    plot_path,
) -> None:
    """Index DATASET's corpus with the real pipeline (reused on later runs) and score every query."""
    from kret.evaluators.report import render_report
    from kret.evaluators.runner import evaluate_dataset

    if plot_path:  # before the evaluation, not after minutes of it
        from kret.extras import require_extra

        require_extra("plot", "--plot")
    kr = get_kret(ctx)
    with IndexProgress() as progress:
        report = evaluate_dataset(
            kr,
            dataset,
            split=split,
            model=model,
            ks=_parse_ks(ks),
            max_queries=max_queries,
            progress=progress,
            **search_opts,
        )
    if out_path:
        report.to_json(Path(out_path))
        console.print(f"report written to {out_path}")
    render_report(report, out)
    if plot_path:
        from kret.evaluators.plot import plot_reports

        plot_reports([report], Path(plot_path))
        console.print(f"plot written to {plot_path}")


@eval_group.command("compare", context_settings=CONTEXT)
@click.argument("a", type=click.Path(exists=True, dir_okay=False))
@click.argument("b", type=click.Path(exists=True, dir_okay=False))
@click.option("--alpha", default=0.05, show_default=True)
def eval_compare(a, b, alpha) -> None:
    """Per-metric deltas B − A with a paired randomisation test and bootstrap CI; says whether B beats A."""
    from kret.evaluators.report import EvalReport, compare_reports, render_comparison

    cmp = compare_reports(EvalReport.from_json(Path(a)), EvalReport.from_json(Path(b)), alpha=alpha)
    render_comparison(cmp, out)


@eval_group.command("plot", context_settings=CONTEXT)
@click.argument("reports", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False))
def eval_plot(reports, out_path) -> None:
    """Metric@k curves of one or more reports, one line per report."""
    from kret.evaluators.plot import plot_reports
    from kret.evaluators.report import EvalReport

    plot_reports([EvalReport.from_json(Path(r)) for r in reports], Path(out_path))
    console.print(f"plot written to {out_path}")
