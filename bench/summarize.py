"""Markdown tables from `kret eval` JSON reports (bench/out/<dataset>.<mode>.json).

python bench/summarize.py bench/out/*.json
"""

from __future__ import annotations

import sys
from pathlib import Path

from kret.evaluators.report import EvalReport

METRICS = ("ndcg@1", "ndcg@3", "ndcg@10", "recall@10", "mrr@10", "f1_per_query_mean@3", "f1_kure@3")


def cell(report: EvalReport, name: str) -> str:
    m = report.metrics.get(name)
    return "–" if m is None else f"{m.mean:.4f} [{m.ci_low:.3f}–{m.ci_high:.3f}]"


def label(report: EvalReport) -> str:
    """Mode, plus fusion settings for hybrid and the model when it is not the default one."""
    name = report.mode
    if report.mode == "hybrid":
        f = report.fusion
        w = f.get("weights", {})
        name += f" {f.get('fusion')}"
        if f.get("fusion") == "rrf":
            name += f" k={f.get('rrf_k')} w={w.get('dense')}/{w.get('sparse')}"
        if f.get("fusion_params"):
            name += " " + ",".join(f"{k}={v:g}" for k, v in sorted(f["fusion_params"].items()))
    if not report.model.name.startswith("multilingual-e5-small"):
        name += f" [{report.model.name}]"
    return name


def main(paths: list[str]) -> None:
    reports = sorted((EvalReport.from_json(Path(p)) for p in paths), key=lambda r: (r.dataset.name, label(r)))
    print("| dataset | system | " + " | ".join(METRICS) + " | chunks | query p50/p95 ms |")
    print("|---|---|" + "---:|" * (len(METRICS) + 2))
    for r in reports:
        t = r.timings
        print(
            f"| {r.dataset.name} | {label(r)} | "
            + " | ".join(cell(r, m) for m in METRICS)
            + f" | {t.get('n_chunks')} | {t.get('query_p50_ms')} / {t.get('query_p95_ms')} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
