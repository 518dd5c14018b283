"""metric@k curves of one or more reports, as a PNG.

matplotlib is an optional extra (``kret[plot]``): it is imported only here, inside the function, so the
rest of the evaluation layer works without it. The figure is drawn on an Agg canvas directly (no pyplot),
so plotting never opens a window, needs no display and leaves the process-wide backend alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from kret.errors import UserInputError
from kret.evaluators.metrics import split_metric_name
from kret.evaluators.report import EvalReport

__all__ = ["plot_reports"]

_DEFAULT_METRICS = ("ndcg", "recall", "precision", "mrr")


def _label(report: EvalReport, many_datasets: bool) -> str:
    label = f"{report.model.name} ({report.mode})"
    return f"{label} — {report.dataset.name}" if many_datasets else label


def plot_reports(reports: Sequence[EvalReport], out: Path, metrics: Sequence[str] = _DEFAULT_METRICS) -> None:
    """One subplot per metric, one line per report (mean, with its CI as a band) against k; writes ``out``.

    A metric absent from every report is an error rather than an empty panel; a report lacking a metric
    just has no line in that panel.
    """
    if not reports:
        raise UserInputError("no reports to plot")
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UserInputError("plotting needs matplotlib: pip install 'kret[plot]'") from None

    series: dict[str, list[tuple[int, EvalReport, list[tuple[int, float, float, float]]]]] = {}
    for metric in metrics:
        lines = []
        for i, report in enumerate(reports):
            points = []
            for name, summary in report.metrics.items():
                family, k = split_metric_name(name)
                if family == metric:
                    points.append((k, summary.mean, summary.ci_low, summary.ci_high))
            if points:
                lines.append((i, report, sorted(points)))
        series[metric] = lines
    missing = [m for m, lines in series.items() if not lines]
    if missing:
        raise UserInputError(f"no report has metric(s) {', '.join(missing)}; have: {_available(reports)}")

    many_datasets = len({r.dataset.hash for r in reports}) > 1
    n = len(metrics)
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(5.5 * cols, 4.0 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    for panel, metric in enumerate(metrics):
        ax = fig.add_subplot(rows, cols, panel + 1)
        ks: set[int] = set()
        for i, report, points in series[metric]:
            xs = [p[0] for p in points]
            ks.update(xs)
            color = f"C{i % 10}"
            ax.plot(xs, [p[1] for p in points], marker="o", color=color, label=_label(report, many_datasets))
            ax.fill_between(
                xs, [p[2] for p in points], [p[3] for p in points], color=color, alpha=0.15, linewidth=0
            )
        ax.set_title(metric)
        ax.set_xlabel("k")
        ax.set_xticks(sorted(ks))
        ax.grid(True, alpha=0.3)
        if panel == 0:
            ax.legend(fontsize="small")
    if not many_datasets:
        d = reports[0].dataset
        fig.suptitle(f"{d.name} ({d.split}, {d.n_queries:,} queries) — mean with CI band")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=120)


def _available(reports: Sequence[EvalReport]) -> str:
    families = {split_metric_name(name)[0] for r in reports for name in r.metrics}
    return ", ".join(sorted(families)) or "none"
