"""Fusion study on saved branch runs: DBSF, RRF, fixed-weight DBSF and query-adaptive fusion, fitted honestly.

    python bench/fusion_replay.py .kret/branches/korquad-dev .kret/branches/miracl-ko-mini [--json out.json]

Each argument is the prefix of a ``bench/branch_runs.py`` output (``<prefix>.branches.jsonl.gz``). Every
fusion is the registry's own client-side ``fuse`` (for DBSF and RRF a replay of Qdrant's formula), scored at
document level with ``evaluators.metrics.evaluate`` exactly as ``kret eval`` scores.

Protocol — no parameter is fitted on the queries it is reported on:

- **2-fold** (within a set): the set's queries are split into two seeded random halves; parameters fitted on
  one half score the other, both directions; the two halves' per-query values are reported together.
- **leave-one-set-out** (across sets): parameters fitted on all the *other* sets (each set weighted
  equally) score this set.
- **shipped**: parameters fitted on all sets together — the defaults; never used for a reported number.

Per set: NDCG@10, Recall@10, MRR@10 with 95 % bootstrap CIs, and the paired randomisation test (with
bootstrap CI of the difference) of NDCG@10 against DBSF and against the better single branch. Plus the
client-side cost of ``fuse`` per query (p50/p95 over the set's queries).
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import numpy as np

from kret.engine.fusion import get_fusion
from kret.evaluators.fusion_fit import (
    FAMILIES,
    BranchRun,
    WeightedDbsfTable,
    branch_fuser,
    fit_params,
    halves,
    method_fuser,
    score_method,
)
from kret.evaluators.stats import bootstrap_ci, paired_test

METRICS = ("ndcg@10", "recall@10", "mrr@10")


def load(prefix: str) -> tuple[str, list[BranchRun]]:
    path = Path(f"{prefix}.branches.jsonl.gz")
    runs = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            doc_of = {c: d for c, d, _ in row["dense"]} | {c: d for c, d, _ in row["sparse"]}
            runs.append(
                BranchRun(
                    qid=row["qid"],
                    dense=[(c, float(s)) for c, _, s in row["dense"]],
                    sparse=[(c, float(s)) for c, _, s in row["sparse"]],
                    doc_of=doc_of,
                    qrels={d: int(g) for d, g in row["qrels"].items()},
                    n_terms=len(set(row["terms"])),
                )
            )
    return Path(prefix).name, runs


def signals(prefix: str) -> None:
    import math

    from scipy.stats import spearmanr

    from kret.engine.sparse import term_id

    name, runs = load(prefix)
    meta = json.loads(Path(f"{prefix}.meta.json").read_text())
    n_docs, df = meta["n_points_with_terms"], {int(k): v for k, v in meta["df"].items()}
    with gzip.open(f"{prefix}.branches.jsonl.gz", "rt", encoding="utf-8") as fh:
        terms = [set(json.loads(line)["terms"]) for line in fh]

    def idf(t: str) -> float:
        n = df.get(term_id(t), 0)
        return math.log(1 + (n_docs - n + 0.5) / (n + 0.5))

    table = WeightedDbsfTable(runs)
    diff = score_method(runs, branch_fuser("sparse")).values("ndcg@10") - score_method(
        runs, branch_fuser("dense")
    ).values("ndcg@10")
    feats = {
        "gap (sparse − dense top margin)": table.feats["gap"],
        "agree (top-10 overlap)": table.feats["agree"],
        "n_terms": np.array([r.n_terms for r in runs], dtype=float),
        "mean IDF": np.array([np.mean([idf(t) for t in ts]) if ts else 0.0 for ts in terms]),
        "IDF mass (sum)": np.array([sum(idf(t) for t in ts) for ts in terms]),
    }
    print(f"## {name}: signal vs NDCG@10(sparse) − NDCG@10(dense), {len(runs)} queries")
    for label, f in feats.items():
        rho, p = spearmanr(f, diff)
        lo, hi = np.quantile(f, [1 / 3, 2 / 3])
        print(
            f"| {label} | ρ {rho:+.3f} (p {p:.3f}) | low tercile {diff[f <= lo].mean():+.4f} "
            f"| high tercile {diff[f > hi].mean():+.4f} |"
        )


def per_query_params(
    n: int, parts: list[np.ndarray], fitted: list[dict[str, float]]
) -> list[dict[str, float]]:
    out: list[dict[str, float]] = [{} for _ in range(n)]
    for idx, params in zip(parts, fitted, strict=True):
        for i in idx:
            out[i] = params
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("prefixes", nargs="+")
    ap.add_argument("--json", type=Path, help="Write every number (and the fitted parameters) here.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--signals",
        action="store_true",
        help="Only print how each query-time signal (and the query's IDF mass, from the dump's df table) "
        "relates to which branch wins: Spearman with NDCG@10(sparse) − NDCG@10(dense), and that difference "
        "in the signal's low and high terciles.",
    )
    args = ap.parse_args()
    if args.signals:
        for prefix in args.prefixes:
            signals(prefix)
        return

    sets = dict(load(p) for p in args.prefixes)
    tables = {name: WeightedDbsfTable(runs) for name, runs in sets.items()}
    adaptive = get_fusion("adaptive")
    report: dict = {
        "sets": {},
        "protocol": "2-fold over seeded query halves (both directions); leave-one-set-out",
    }

    # Fits. 2-fold within each set, and leave-one-set-out; then the shipped defaults on everything.
    fits: dict[str, dict] = {}
    for name, table in tables.items():
        parts = halves(len(table), args.seed)
        for family, names in FAMILIES.items():
            # fit on half a, apply to half b; fit on b, apply to a
            fitted = [fit_params(table, parts[1], names), fit_params(table, parts[0], names)]
            fits[(name, family, "2fold")] = {"parts": parts, "params": fitted}
    all_runs = [r for runs in sets.values() for r in runs]
    big = WeightedDbsfTable(all_runs)
    offsets, start = {}, 0
    for name, runs in sets.items():
        offsets[name] = np.arange(start, start + len(runs))
        start += len(runs)
    qweights = np.concatenate([np.full(len(runs), 1.0 / len(runs)) for runs in sets.values()])
    for name in sets:
        if len(sets) < 2:
            break
        others = np.concatenate([offsets[o] for o in sets if o != name])
        ow = np.concatenate([qweights[offsets[o]] for o in sets if o != name])
        for family, names in FAMILIES.items():
            fits[(name, family, "loso")] = {"params": fit_params(big, others, names, query_weights=ow)}
    shipped = {f: fit_params(big, None, names, query_weights=qweights) for f, names in FAMILIES.items()}
    report["shipped"] = shipped
    print("shipped (fit on all sets, equal weight per set):", json.dumps(shipped))

    for name, runs in sets.items():
        rows: dict[str, object] = {}
        rows["dense"] = score_method(runs, branch_fuser("dense"))
        rows["sparse"] = score_method(runs, branch_fuser("sparse"))
        rows["dbsf"] = score_method(runs, method_fuser("dbsf"))
        rows["rrf k=60"] = score_method(runs, method_fuser("rrf"))
        for family in FAMILIES:
            f2 = fits[(name, family, "2fold")]
            pq = per_query_params(len(runs), f2["parts"], f2["params"])
            lookup = {r.qid: p for r, p in zip(runs, pq, strict=True)}
            rows[f"{family} (2-fold)"] = score_method(
                runs, lambda r, lk=lookup: adaptive.fuse(r.fusion_input(lk[r.qid]))
            )
            if (name, family, "loso") in fits:
                params = fits[(name, family, "loso")]["params"]
                rows[f"{family} (leave-one-set-out)"] = score_method(
                    runs, lambda r, p=params: adaptive.fuse(r.fusion_input(p))
                )
        better = max(("dense", "sparse"), key=lambda b: rows[b].means["ndcg@10"])
        out_rows = {}
        print(f"\n## {name} ({len(runs)} queries); better branch: {better}")
        print(
            "| system | NDCG@10 | Recall@10 | MRR@10 | Δ NDCG@10 vs DBSF [95 % CI], p | Δ vs " + better + " |"
        )
        print("|---|---:|---:|---:|---|---|")
        for label, res in rows.items():
            cells, entry = [], {}
            for m in METRICS:
                vals = res.values(m)
                lo, hi = bootstrap_ci(vals)
                cells.append(f"{vals.mean():.4f} [{lo:.3f}–{hi:.3f}]")
                entry[m] = {"mean": float(vals.mean()), "ci": [lo, hi]}
            tests = []
            for ref in ("dbsf", better):
                if label == ref:
                    tests.append("–")
                    continue
                t = paired_test(rows[ref].values("ndcg@10"), res.values("ndcg@10"))
                tests.append(f"{t.delta:+.4f} [{t.ci_low:+.4f}, {t.ci_high:+.4f}], p={t.p_value:.3f}")
                entry[f"vs_{ref}"] = t._asdict()
            out_rows[label] = entry
            print(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(tests) + " |")
        for key, fit in fits.items():
            if key[0] == name:
                print(f"fitted {key[1]} {key[2]}: {json.dumps(fit['params'])}")

        # client-side cost of fusion, per query
        lat = {}
        for method in ("dbsf", "adaptive"):
            fuse = method_fuser(method, shipped["adaptive"] if method == "adaptive" else None)
            times = []
            for r in runs[:1000]:
                t0 = time.perf_counter()
                fuse(r)
                times.append((time.perf_counter() - t0) * 1000)
            lat[method] = {
                "p50_ms": float(np.percentile(times, 50)),
                "p95_ms": float(np.percentile(times, 95)),
            }
        print("client-side fuse ms:", json.dumps(lat))
        report["sets"][name] = {
            "queries": len(runs),
            "better_branch": better,
            "rows": out_rows,
            "fits": {f"{k[1]} {k[2]}": v["params"] for k, v in fits.items() if k[0] == name},
            "fuse_latency": lat,
        }
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=float))


if __name__ == "__main__":
    main()
