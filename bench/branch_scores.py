"""NDCG@10 of each saved branch, and what exact dense search changes, from one ``bench/branch_runs.py`` dump.

    python bench/branch_scores.py .kret/branches/korquad-dev-hard

Reads ``<prefix>.branches.jsonl.gz`` (saved with ``--modes dense,sparse[,dense-exact]``). Per branch:
NDCG@10 and Recall@10 at document level (a document scores its best chunk, as ``kret eval`` ranks), with a 95 %
bootstrap CI. When ``dense-exact`` is there: hybrid DBSF and RRF (the fusion registry's replay of Qdrant's
formula) with the HNSW dense branch and with the exact one, each fusion against the better single branch, the paired randomisation test of exact − HNSW for
dense and both fusions, and how many of HNSW's top 10 chunks the exact top 10 shares. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json

import numpy as np
from fusion_replay import load

from kret.evaluators.fusion_fit import method_fuser, score_method
from kret.evaluators.metrics import evaluate
from kret.evaluators.stats import MEAN, bootstrap_ci, paired_test_many


def _ndcg(e) -> np.ndarray:
    return np.array([e.per_query["ndcg@10"][q] for q in e.query_ids])


def _summary(e) -> dict:
    vals = _ndcg(e)
    lo, hi = bootstrap_ci(vals)
    return {
        "ndcg@10": round(float(vals.mean()), 4),
        "ci": [round(lo, 4), round(hi, 4)],
        "recall@10": round(e.means["recall@10"], 4),
        "queries": len(vals),
    }


def _paired(a, b) -> dict:
    t = paired_test_many({"values": _ndcg(a)}, {"values": _ndcg(b)}, {"ndcg": MEAN})["ndcg"]
    return {"delta": round(t.delta, 4), "ci": [round(t.ci_low, 4), round(t.ci_high, 4)], "p": t.p_value}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("prefix")
    args = ap.parse_args()
    with gzip.open(f"{args.prefix}.branches.jsonl.gz", "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    qrels = {r["qid"]: {d: int(g) for d, g in r["qrels"].items()} for r in rows}
    out: dict = {}
    evals = {}
    for mode in (m for m in ("dense", "dense-exact", "sparse") if m in rows[0]):
        run = {}
        for r in rows:
            docs: dict[str, float] = {}
            for _chunk, doc, score in r[mode]:
                docs[doc] = max(docs.get(doc, -np.inf), float(score))
            run[r["qid"]] = docs
        evals[mode] = evaluate(qrels, run, ks=(10,), metrics=("ndcg", "recall"))
        out[mode] = _summary(evals[mode])
    _, runs = load(args.prefix)
    better = max(("dense", "sparse"), key=lambda m: out[m]["ndcg@10"])
    for fusion in ("dbsf", "rrf"):
        hnsw = score_method(runs, method_fuser(fusion))
        out[f"hybrid-{fusion}"] = _summary(hnsw)
        out[f"hybrid-{fusion} - {better}"] = _paired(evals[better], hnsw)
        if "dense-exact" in evals:
            exact_runs = [
                dataclasses.replace(
                    run,
                    dense=[(c, float(s)) for c, _d, s in row["dense-exact"]],
                    doc_of=run.doc_of | {c: d for c, d, _s in row["dense-exact"]},
                )
                for run, row in zip(runs, rows, strict=True)
            ]
            exact = score_method(exact_runs, method_fuser(fusion))
            out[f"hybrid-{fusion}-exact"] = _summary(exact)
            out[f"hybrid-{fusion}: exact - hnsw"] = _paired(hnsw, exact)
    if "dense-exact" in evals:
        out["dense: exact - hnsw"] = _paired(evals["dense"], evals["dense-exact"])
        shared = [
            len({c for c, _, _ in r["dense"][:10]} & {c for c, _, _ in r["dense-exact"][:10]}) / 10
            for r in rows
        ]
        out["hnsw top-10 shared with exact"] = round(float(np.mean(shared)), 4)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
