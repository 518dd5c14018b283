"""Evaluation reports: what was measured, on what, with which model -- and comparisons between two of them.

A report is meant to be kept and compared later, so it carries everything needed to judge whether two
numbers are comparable (dataset name, path, split and content hash; model fingerprint; mode and fusion
settings; kret version and git commit; the chunk-to-document aggregation) and the per-query values that
make a paired significance test possible without re-running anything. ``compare_reports`` refuses pairs
that are not on the same data, because a difference between different query sets means nothing.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kret import __version__ as kret_version
from kret.errors import DatasetError, UserInputError
from kret.evaluators.metrics import (
    AGGREGATION_NOTE,
    EvalResult,
    split_metric_name,
    statistic_for,
)
from kret.evaluators.stats import Statistic, bootstrap_ci_many, paired_test_many

if TYPE_CHECKING:
    from rich.console import Console

    from kret.evaluators.beir import BeirDataset

__all__ = [
    "CIInfo",
    "Comparison",
    "DatasetInfo",
    "EvalReport",
    "MetricComparison",
    "MetricSummary",
    "ReportedModel",
    "compare_reports",
    "git_commit",
    "render_comparison",
    "render_report",
]

SCHEMA_VERSION = 1
VERDICT_B = "B better"
VERDICT_A = "A better"
VERDICT_NONE = "no significant difference"


class DatasetInfo(BaseModel):
    """Where the numbers come from; ``n_queries`` counts the queries actually evaluated."""

    model_config = ConfigDict(extra="forbid")

    name: str
    path: str
    split: str
    hash: str
    n_queries: int
    n_docs: int
    corpus_hash: str | None = None  # absent in reports written before it existed

    @classmethod
    def from_beir(cls, dataset: BeirDataset) -> DatasetInfo:
        return cls(
            name=dataset.name,
            path=str(dataset.path),
            split=dataset.split,
            hash=dataset.data_hash,
            corpus_hash=dataset.corpus_hash,
            n_queries=dataset.n_queries,
            n_docs=dataset.n_docs,
        )


class ReportedModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    fingerprint: str | None = None


class MetricSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mean: float
    ci_low: float
    ci_high: float


class CIInfo(BaseModel):
    """How the intervals were made, so a reader can tell a 95% percentile bootstrap from anything else."""

    model_config = ConfigDict(extra="forbid")

    method: str = "percentile bootstrap over queries"
    n_resamples: int = 1000
    alpha: float = 0.05
    seed: int = 0


class EvalReport(BaseModel):
    """One evaluation run, self-describing and JSON round-trippable.

    ``metrics`` keys are ``<metric>@<k>`` (``f1_kure@k`` included: it is a corpus-level statistic, so it has
    a mean and CI but no per-query values); ``per_query`` holds every per-query metric, which is what
    ``compare_reports`` needs. ``timings`` is free-form; the runner fills ``index_s``, ``query_p50_ms``,
    ``query_p95_ms``, ``n_chunks`` and may add more.
    """

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    dataset: DatasetInfo
    model: ReportedModel
    mode: str
    fusion: dict[str, Any] = Field(default_factory=dict)
    kret_version: str = kret_version
    git_commit: str | None = None
    aggregation: str = AGGREGATION_NOTE
    ks: list[int]
    metrics: dict[str, MetricSummary]
    per_query: dict[str, dict[str, float]]
    ci: CIInfo = Field(default_factory=CIInfo)
    timings: dict[str, float | int | None] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    @classmethod
    def from_result(
        cls,
        result: EvalResult,
        dataset: DatasetInfo | BeirDataset,
        model: ReportedModel,
        mode: str,
        fusion: Mapping[str, Any] | None = None,
        timings: Mapping[str, float | int | None] | None = None,
        warnings: list[str] | None = None,
        n_resamples: int = 1000,
        alpha: float = 0.05,
        seed: int = 0,
    ) -> EvalReport:
        """Build a report from an ``EvalResult``, computing a bootstrap CI for every metric@k.

        All metrics share one set of query resamples; ``f1_kure`` is recomputed from resampled mean P and R.
        Warnings of the dataset (when a ``BeirDataset`` is given) and of the evaluation are kept.
        """
        all_warnings = list(warnings or [])
        if not isinstance(dataset, DatasetInfo):
            all_warnings = list(dataset.warnings) + all_warnings
            dataset = DatasetInfo.from_beir(dataset)
        all_warnings += list(result.warnings)
        if len(result.query_ids) != dataset.n_queries:
            # A subset run (e.g. --max-queries) must not pass for the full split.
            all_warnings.append(
                f"evaluated {len(result.query_ids)} of the split's {dataset.n_queries} queries"
            )
            dataset = dataset.model_copy(update={"n_queries": len(result.query_ids)})
        statistics = {name: statistic_for(name) for name in result.means}
        columns = {name: result.values(name) for name in result.per_query}
        intervals = bootstrap_ci_many(columns, statistics, n_resamples=n_resamples, alpha=alpha, seed=seed)
        metrics = {
            name: MetricSummary(mean=mean, ci_low=intervals[name][0], ci_high=intervals[name][1])
            for name, mean in result.means.items()
        }
        return cls(
            dataset=dataset,
            model=model,
            mode=mode,
            fusion=dict(fusion or {}),
            git_commit=git_commit(),
            ks=list(result.ks),
            metrics=metrics,
            per_query={name: dict(values) for name, values in result.per_query.items()},
            ci=CIInfo(n_resamples=n_resamples, alpha=alpha, seed=seed),
            timings=dict(timings or {}),
            warnings=all_warnings,
        )

    def to_json(self, path: Path | None = None, indent: int | None = 2) -> str:
        """Serialise; with ``path``, also write the file (parents created)."""
        text = self.model_dump_json(indent=indent)
        if path is not None:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text + "\n", encoding="utf-8")
        return text

    @classmethod
    def from_json(cls, source: str | Path) -> EvalReport:
        """Load from JSON text or a file path; a bad file is a ``DatasetError`` naming it."""
        origin = "report JSON"
        if isinstance(source, Path) or not source.lstrip().startswith("{"):
            path = Path(source)
            origin = str(path)
            try:
                source = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise DatasetError(f"{path}: cannot read report ({exc.strerror or exc})") from None
        try:
            return cls.model_validate_json(source)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise DatasetError(
                f"{origin}: not a kret evaluation report ({where}: {first.get('msg')})"
            ) from None

    def metric_names(self) -> list[str]:
        return list(self.metrics)


def git_commit() -> str | None:
    """The commit of the kret checkout, best effort: ``None`` outside a git checkout or without git."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and len(commit) >= 7 else None


# --- comparison ---------------------------------------------------------------------------------------


class MetricComparison(BaseModel):
    """One metric@k of a comparison; ``delta`` and its CI are B - A."""

    name: str
    mean_a: float
    mean_b: float
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    verdict: str


class Comparison(BaseModel):
    label_a: str
    label_b: str
    dataset: DatasetInfo
    n_queries: int
    alpha: float
    n_resamples: int
    seed: int
    test: str = "paired randomisation (swap per query) test, two-sided; CI: paired percentile bootstrap"
    rows: dict[str, MetricComparison]
    skipped: list[str] = Field(default_factory=list)

    def headline_metric(self, preferred: str = "ndcg@10") -> str:
        """The metric a one-line verdict should speak about: ``preferred`` if present, else the deepest NDCG."""
        if preferred in self.rows:
            return preferred
        ndcgs = sorted((split_metric_name(n)[1], n) for n in self.rows if n.startswith("ndcg@"))
        return ndcgs[-1][1] if ndcgs else next(iter(self.rows))

    def verdict_line(self, metric: str | None = None) -> str:
        """A plain sentence, e.g. ``B beats A on ndcg@10 by +0.0123 (95% CI +0.004…+0.020, p=0.003)``."""
        name = metric or self.headline_metric()
        row = self.rows[name]
        level = f"{round((1 - self.alpha) * 100):g}%"
        p = _format_p(row.p_value)
        a, b = self.label_a, self.label_b
        if row.verdict == VERDICT_B:
            return f"{b} beats {a} on {name} by {row.delta:+.4f} ({level} CI {row.ci_low:+.3f}…{row.ci_high:+.3f}, {p})"
        if row.verdict == VERDICT_A:
            return (
                f"{a} beats {b} on {name} by {-row.delta:+.4f} "
                f"({level} CI {-row.ci_high:+.3f}…{-row.ci_low:+.3f}, {p})"
            )
        return (
            f"No significant difference between {a} and {b} on {name}: {b} - {a} = {row.delta:+.4f} "
            f"({level} CI {row.ci_low:+.3f}…{row.ci_high:+.3f}, {p})"
        )


def compare_reports(
    a: EvalReport,
    b: EvalReport,
    alpha: float = 0.05,
    n_resamples: int = 10000,
    seed: int = 0,
    labels: tuple[str, str] = ("A", "B"),
) -> Comparison:
    """Paired comparison of two reports on every metric@k they share.

    Refuses (``UserInputError``) when the reports are on different data (dataset hash or split) or were
    evaluated on different query sets. The verdict is by the p-value at ``alpha``; ``f1_kure`` uses the
    swap test and paired bootstrap of the statistic itself, recomputed from per-query precision and recall.
    """
    da, db = a.dataset, b.dataset
    if (da.hash, da.split) != (db.hash, db.split):
        raise UserInputError(
            f"cannot compare reports on different data: A is {da.name} split {da.split!r} (hash {da.hash}), "
            f"B is {db.name} split {db.split!r} (hash {db.hash})"
        )
    statistics: dict[str, Statistic] = {}
    skipped: list[str] = []
    for name in a.metrics:
        if name not in b.metrics:
            continue
        stat = statistic_for(name)
        if all(col in a.per_query and col in b.per_query for col in stat.inputs):
            statistics[name] = stat
        else:
            skipped.append(f"{name}: no per-query values in one of the reports")
    if not statistics:
        raise UserInputError("the two reports have no metric@k with per-query values in common")

    columns = sorted({col for stat in statistics.values() for col in stat.inputs})
    query_ids = sorted(a.per_query[columns[0]])
    query_set = set(query_ids)
    for col in columns:
        for label, report in ((labels[0], a), (labels[1], b)):
            if set(report.per_query[col]) != query_set:
                only_a = len(query_set - set(report.per_query[col]))
                only_b = len(set(report.per_query[col]) - query_set)
                raise UserInputError(
                    f"cannot compare: report {label} was evaluated on a different query set for {col} "
                    f"({only_a} queries missing, {only_b} extra)"
                )

    def arrays(report: EvalReport) -> dict[str, list[float]]:
        return {col: [report.per_query[col][q] for q in query_ids] for col in columns}

    tests = paired_test_many(
        arrays(a), arrays(b), statistics, n_resamples=n_resamples, alpha=alpha, seed=seed
    )
    rows: dict[str, MetricComparison] = {}
    for name, test in tests.items():
        verdict = VERDICT_NONE
        if test.p_value < alpha:
            verdict = VERDICT_B if test.delta > 0 else VERDICT_A
        rows[name] = MetricComparison(
            name=name,
            mean_a=a.metrics[name].mean,
            mean_b=b.metrics[name].mean,
            delta=test.delta,
            ci_low=test.ci_low,
            ci_high=test.ci_high,
            p_value=test.p_value,
            verdict=verdict,
        )
    return Comparison(
        label_a=labels[0],
        label_b=labels[1],
        dataset=da,
        n_queries=len(query_ids),
        alpha=alpha,
        n_resamples=n_resamples,
        seed=seed,
        rows=rows,
        skipped=skipped,
    )


# --- rendering ----------------------------------------------------------------------------------------


def _format_p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def _grid(names: list[str]) -> tuple[list[str], list[int]]:
    """Metric families (rows, first-seen order) and ks (columns, ascending) present among ``names``."""
    families: dict[str, None] = {}
    ks: set[int] = set()
    for name in names:
        family, k = split_metric_name(name)
        families[family] = None
        ks.add(k)
    return list(families), sorted(ks)


def render_report(report: EvalReport, console: Console) -> None:
    """A metrics x k table of ``mean [CI]`` cells, then provenance, timings and warnings."""
    from rich.table import Table
    from rich.text import Text

    families, ks = _grid(list(report.metrics))
    d = report.dataset
    level = f"{round((1 - report.ci.alpha) * 100):g}%"
    table = Table(
        title=Text(
            f"{d.name} ({d.split}, {d.n_queries:,} queries, {d.n_docs:,} docs) — {report.model.name} [{report.mode}]"
        ),
        caption=Text(
            f"mean [{level} CI, {report.ci.method}, {report.ci.n_resamples} resamples]; {report.aggregation}"
        ),
    )
    table.add_column("metric", style="bold")
    for k in ks:
        table.add_column(f"@{k}", justify="right")
    for family in families:
        cells = []
        for k in ks:
            summary = report.metrics.get(f"{family}@{k}")
            cells.append(
                Text(
                    "—"
                    if summary is None
                    else f"{summary.mean:.4f} [{summary.ci_low:.2f}–{summary.ci_high:.2f}]"
                )
            )
        table.add_row(family, *cells)
    console.print(table)
    if any(f.startswith("f1_") for f in families):
        console.print(
            "f1_per_query_mean = mean over queries of 2PR/(P+R); f1_kure = 2·mean(P)·mean(R)/(mean(P)+mean(R)) "
            "(KURE leaderboard style)",
            style="dim",
        )
    provenance = [f"model fingerprint {report.model.fingerprint or '—'}", f"kret {report.kret_version}"]
    provenance.append(f"commit {report.git_commit[:12]}" if report.git_commit else "commit unknown")
    provenance.append(f"dataset hash {d.hash}")
    if report.fusion:
        provenance.append("fusion " + json.dumps(report.fusion, sort_keys=True))
    console.print(Text(", ".join(provenance), style="dim"))
    if report.timings:
        console.print(
            Text("timings: " + ", ".join(f"{k}={_format_number(v)}" for k, v in report.timings.items()))
        )
    for warning in report.warnings:
        console.print(Text(f"warning: {warning}", style="yellow"))


def _format_number(value: float | int | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}"


def render_comparison(comparison: Comparison, console: Console) -> None:
    """A metrics x k table of ``A → B, delta [CI], p`` cells coloured by verdict, then the one-line verdict."""
    from rich.table import Table
    from rich.text import Text

    families, ks = _grid(list(comparison.rows))
    a, b = comparison.label_a, comparison.label_b
    level = f"{round((1 - comparison.alpha) * 100):g}%"
    table = Table(
        title=Text(
            f"{a} vs {b} on {comparison.dataset.name} ({comparison.dataset.split}, {comparison.n_queries:,} queries)"
        ),
        caption=Text(
            f"{a} → {b}; {b} - {a} [{level} CI]; {comparison.test}, {comparison.n_resamples} resamples; "
            f"green: {b} better, red: {a} better (p < {comparison.alpha:g})"
        ),
    )
    table.add_column("metric", style="bold")
    for k in ks:
        table.add_column(f"@{k}", justify="right")
    styles = {VERDICT_B: "green", VERDICT_A: "red", VERDICT_NONE: "dim"}
    for family in families:
        cells = []
        for k in ks:
            row = comparison.rows.get(f"{family}@{k}")
            if row is None:
                cells.append(Text("—"))
                continue
            text = (
                f"{row.mean_a:.4f} → {row.mean_b:.4f}\n{row.delta:+.4f} [{row.ci_low:+.3f}…{row.ci_high:+.3f}]\n"
                f"{_format_p(row.p_value)}"
            )
            cells.append(Text(text, style=styles[row.verdict]))
        table.add_row(family, *cells)
    console.print(table)
    for note in comparison.skipped:
        console.print(Text(f"skipped {note}", style="yellow"))
    console.print(Text(comparison.verdict_line()))
