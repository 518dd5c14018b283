"""The evaluation gate: a fine-tuned model becomes the default only if it measurably helps.

Fine-tuning on a few hundred queries can overfit or drift, and a bad default silently degrades every new
collection. So the candidate must beat its parent on the held-out queries of the user's own collection
*beyond the confidence interval* (the delta's CI lies above zero and the paired test's p < alpha), and must
not be significantly worse on any general evaluation set given (catastrophic forgetting shows there first).
``force`` promotes anyway and says so in the recorded decision.

The gate runs in one or several search modes (``modes``: dense, hybrid, or both, the default): a model that
helps the dense branch can still change nothing once BM25 is fused in, and the user serves one of them. With
several modes the candidate must win on the held-out set in *every* mode and lose significantly in none, on
no evaluation set; every mode's paired delta, CI and p are reported.

Both models are scored by ``evaluate_dataset``, i.e. through the real indexing and search pipeline; the
parent's evaluation collections are cached by fingerprint, so repeated gates index them once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kret.engine.models import ModelInfo
from kret.engine.types import ProgressFn
from kret.errors import UserInputError
from kret.evaluators.report import VERDICT_A, Comparison, EvalReport, MetricComparison, compare_reports

from .queries import CollectionCatalog, TrainQuery, normalize_text

if TYPE_CHECKING:
    from kret.api import Kret

__all__ = ["GateDecision", "check_metric", "decide", "gate", "write_heldout_beir"]

HELDOUT_NAME = "heldout"
GATE_MODES = ("dense", "hybrid", "both")


def gate_modes(mode: str) -> tuple[str, ...]:
    """``both`` -> (dense, hybrid); a single mode -> itself."""
    if mode not in GATE_MODES:
        raise UserInputError(f"gate mode must be one of {', '.join(GATE_MODES)}, got {mode!r}")
    return ("dense", "hybrid") if mode == "both" else (mode,)


@dataclass
class GateResult:
    """One dataset's comparison, as recorded in the lineage."""

    dataset: str
    role: str  # "heldout" or "eval"
    path: str
    metric: str
    parent_mean: float
    candidate_mean: float
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    verdict: str
    verdict_line: str
    parent_report: str | None = None
    candidate_report: str | None = None
    mode: str | None = None


@dataclass
class GateDecision:
    promoted: bool
    forced: bool
    reason: str
    metric: str
    alpha: float
    candidate: str
    parent: str
    results: list[GateResult] = field(default_factory=list)
    next_command: str | None = None
    comparisons: list[Comparison] = field(default_factory=list, repr=False)

    @property
    def verdict_lines(self) -> list[str]:
        return [
            f"[{r.role}: {r.dataset}{', ' + r.mode if r.mode else ''}] {r.verdict_line}" for r in self.results
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "promoted": self.promoted,
            "forced": self.forced,
            "reason": self.reason,
            "metric": self.metric,
            "alpha": self.alpha,
            "candidate": self.candidate,
            "parent": self.parent,
            "results": [asdict(r) for r in self.results],
            "verdicts": self.verdict_lines,
            "next_command": self.next_command,
        }


# ---------------------------------------------------------------------------------------------------------
# The held-out set as a BEIR folder
# ---------------------------------------------------------------------------------------------------------


def write_heldout_beir(
    catalog: CollectionCatalog,
    heldout: Sequence[TrainQuery],
    folder: Path,
    *,
    also_relevant: Sequence[TrainQuery] = (),
) -> Path:
    """Write corpus (every document of the collection, rebuilt from its chunks), queries and qrels.

    The whole collection is the corpus, so the held-out score is the user's retrieval problem with all its
    distractors, not a toy subset. Held-out rows with the same query text are one query whose qrels are all
    their positives, plus the positives of any ``also_relevant`` row with that text (a query with several
    positive documents): scoring each positive as a separate query would count its siblings as misses.
    """
    groups: dict[str, tuple[str, str, set[str]]] = {}
    for q in heldout:
        key = normalize_text(q.query)
        if key not in groups:
            groups[key] = (q.qid, q.query, set())
        groups[key][2].add(q.positive_doc_id or "")
    for q in also_relevant:
        key = normalize_text(q.query)
        if key in groups and q.positive_doc_id:
            groups[key][2].add(q.positive_doc_id)
    folder = Path(folder)
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as fh:
        for doc_id in catalog.doc_ids:
            row = {"_id": doc_id, "title": catalog.doc_title(doc_id), "text": catalog.doc_text(doc_id)}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as fh:
        for qid, text, _ in groups.values():
            fh.write(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n")
    with (folder / "qrels" / "test.tsv").open("w", encoding="utf-8") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for qid, _, docs in groups.values():
            for doc_id in sorted(docs):
                fh.write(f"{qid}\t{doc_id}\t1\n")
    return folder


# ---------------------------------------------------------------------------------------------------------
# The rule
# ---------------------------------------------------------------------------------------------------------


def check_metric(metric: str) -> None:
    """Refuse a gate metric the evaluation will not produce *before* hours of training, not after."""
    from kret.evaluators.metrics import DEFAULT_KS, split_metric_name, statistic_for

    statistic_for(metric)
    if split_metric_name(metric)[1] not in DEFAULT_KS:
        raise UserInputError(
            f"gate metric {metric!r}: k must be one of {', '.join(map(str, DEFAULT_KS))} (the evaluated cut-offs)"
        )


def _row(cmp: Comparison, metric: str) -> MetricComparison:
    if metric not in cmp.rows:
        raise UserInputError(
            f"gate metric {metric!r} is not in the reports (have: {', '.join(sorted(cmp.rows))})"
        )
    return cmp.rows[metric]


def decide(
    heldout: Comparison | None,
    evals: Sequence[tuple[str, Comparison]],
    *,
    metric: str = "ndcg@10",
    alpha: float = 0.05,
    force: bool = False,
) -> tuple[bool, str]:
    """Promote only on a significant win (CI of the delta above 0 and p < alpha) and no significant loss.

    The win is required on the held-out set; without one, on at least one evaluation set. A loss on any
    evaluation set blocks promotion. Comparisons are parent (A) vs candidate (B).
    """
    losses = [name for name, cmp in evals if _lost(_row(cmp, metric), alpha)]
    if heldout is not None:
        row = _row(heldout, metric)
        win = row.ci_low > 0 and row.p_value < alpha
        win_text = f"held-out {metric} {row.delta:+.4f} (CI {row.ci_low:+.4f}…{row.ci_high:+.4f}, p={row.p_value:.3g})"
    else:
        wins = [n for n, cmp in evals if (r := _row(cmp, metric)).ci_low > 0 and r.p_value < alpha]
        win = bool(wins)
        win_text = (
            f"significant {metric} win on {', '.join(wins)}" if wins else f"no significant {metric} win"
        )
    if not evals and heldout is None:
        reason = "nothing to evaluate on (no held-out queries, no --eval dataset)"
        ok = False
    elif not win:
        reason = f"no significant win: {win_text}"
        ok = False
    elif losses:
        reason = f"{win_text}, but significantly worse on {', '.join(losses)}"
        ok = False
    else:
        ok = True
        reason = f"{win_text}; no significant loss on {len(evals)} eval set(s)"
    if force and not ok:
        return True, f"forced (--force) although the gate failed: {reason}"
    if force:
        return True, f"forced (--force); the gate passed anyway: {reason}"
    return ok, reason


def _lost(row: MetricComparison, alpha: float) -> bool:
    return row.verdict == VERDICT_A or (row.p_value < alpha and row.delta < 0)


# ---------------------------------------------------------------------------------------------------------
# gate
# ---------------------------------------------------------------------------------------------------------


def _evaluate(
    kr: Kret, dataset: Path, model: str, split: str, overrides: dict[str, Any], progress: ProgressFn | None
) -> EvalReport:
    from kret.evaluators.runner import evaluate_dataset

    return evaluate_dataset(kr, dataset, split=split, model=model, progress=progress, **overrides)


def gate(
    kr: Kret,
    parent: ModelInfo,
    candidate: ModelInfo,
    *,
    heldout_dataset: Path | None,
    eval_datasets: Sequence[Path] = (),
    metric: str = "ndcg@10",
    alpha: float = 0.05,
    force: bool = False,
    collection: str | None = None,
    out_dir: Path | None = None,
    split: str = "test",
    mode: str | None = None,
    modes: Sequence[str] | None = None,
    progress: Callable[..., None] | None = None,
) -> GateDecision:
    """Evaluate parent and candidate on every dataset, decide, record the decision, promote if it passed.

    Reports are saved as JSON under ``out_dir`` (default: the run folder of the held-out set). The decision
    goes into the candidate's lineage (``evals`` and ``gate``); promotion makes the candidate the registry's
    default. Re-indexing the collection with it is a separate, explicit step (``next_command``).
    """
    check_metric(metric)
    if heldout_dataset is None and not eval_datasets and not force:
        raise UserInputError(
            "the gate needs something to evaluate on: held-out queries (--heldout > 0) or --eval DATASET"
        )
    out_dir = Path(
        out_dir or (Path(heldout_dataset).parent if heldout_dataset else kr.settings.home / "runs")
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    # ``modes`` (e.g. dense and hybrid) wins over ``mode``; neither = the settings' search mode only
    run_modes: list[str | None] = list(modes) if modes else [mode]
    parent_spec = parent.source or parent.path
    datasets: list[tuple[str, Path]] = []
    if heldout_dataset is not None:
        datasets.append(("heldout", Path(heldout_dataset)))
    datasets += [("eval", Path(p)) for p in eval_datasets]

    results: list[GateResult] = []
    comparisons: list[Comparison] = []
    per_mode: dict[str | None, tuple[Comparison | None, list[tuple[str, Comparison]]]] = {
        m: (None, []) for m in run_modes
    }
    evals_record: list[dict[str, Any]] = []
    for role, path in datasets:
        for run_mode in run_modes:
            overrides = {"mode": run_mode} if run_mode else {}
            where = f"{role} set {path.name}" + (f", {run_mode}" if run_mode else "")
            if progress:
                progress(note=f"gate: evaluating parent and candidate on {where}")
            a = _evaluate(kr, path, parent_spec, split, overrides, progress)
            b = _evaluate(kr, path, candidate.name, split, overrides, progress)
            tag = f"{role}-{path.name}" + (f".{run_mode}" if run_mode else "")
            pa, pb = out_dir / f"{tag}.parent.json", out_dir / f"{tag}.candidate.json"
            a.to_json(pa)
            b.to_json(pb)
            cmp = compare_reports(a, b, alpha=alpha, labels=(parent.name, candidate.name))
            comparisons.append(cmp)
            row = _row(cmp, metric)
            results.append(
                GateResult(
                    dataset=path.name,
                    role=role,
                    path=str(path),
                    metric=metric,
                    parent_mean=row.mean_a,
                    candidate_mean=row.mean_b,
                    delta=row.delta,
                    ci_low=row.ci_low,
                    ci_high=row.ci_high,
                    p_value=row.p_value,
                    verdict=row.verdict,
                    verdict_line=cmp.verdict_line(metric),
                    parent_report=str(pa),
                    candidate_report=str(pb),
                    mode=run_mode or getattr(b, "mode", None),
                )
            )
            held, evs = per_mode[run_mode]
            if role == "heldout":
                per_mode[run_mode] = (cmp, evs)
            else:
                evs.append((path.name, cmp))
            evals_record.append(
                {
                    "dataset": b.dataset.name,
                    "role": role,
                    "path": str(path),
                    "split": b.dataset.split,
                    "hash": b.dataset.hash,
                    "n_queries": b.dataset.n_queries,
                    "mode": b.mode,
                    "metrics": {k: v.mean for k, v in b.metrics.items()},
                    "parent_metrics": {k: v.mean for k, v in a.metrics.items()},
                    "report": str(pb),
                    "parent_report": str(pa),
                    "verdict": cmp.verdict_line(metric),
                }
            )
    verdicts = []
    for run_mode, (held, evs) in per_mode.items():
        ok, why = decide(held, evs, metric=metric, alpha=alpha, force=False)
        verdicts.append((run_mode, ok, why))
    if len(verdicts) == 1:
        promoted, reason = verdicts[0][1], verdicts[0][2]
    else:
        promoted = all(ok for _, ok, _ in verdicts)
        reason = "; ".join(f"{m}: {'pass' if ok else 'fail'} ({why})" for m, ok, why in verdicts)
    if force:
        reason = (
            f"forced (--force); the gate passed anyway: {reason}"
            if promoted
            else f"forced (--force) although the gate failed: {reason}"
        )
        promoted = True
    decision = GateDecision(
        promoted=promoted,
        forced=force,
        reason=reason,
        metric=metric,
        alpha=alpha,
        candidate=candidate.name,
        parent=parent.name,
        results=results,
        comparisons=comparisons,
    )
    if collection:
        decision.next_command = f"kret reindex --collection {collection} --model {candidate.name}"
    record = {**decision.as_dict(), "decided_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (out_dir / "gate.json").write_text(json.dumps(record, ensure_ascii=False, indent=2), encoding="utf-8")
    kr.registry.update_lineage(candidate.name, evals=evals_record, gate=record)
    if promoted:
        kr.registry.set_default(candidate.name)
    return decision
