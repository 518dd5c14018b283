"""Which hybrid fusion suits Korean? Replays Qdrant's fusion formulas over each branch's top 100.

    python bench/fusion_study.py --dataset ../shared/data/bench/korquad-dev [--max-queries N]

Runs every query once per branch through kret's search path (dense, sparse; top 100 chunks), then fuses
client-side with Qdrant's formulas — RRF: Σ 1/((pos+1)/w + k − 1) (qdrant-edge reciprocal_rank_fusion.rs),
DBSF: per-list (s − (μ − 3σ)) / 6σ summed — for a grid of k and weights, and scores NDCG@10 at document level.
A setting picked here is then confirmed with a real `kret eval --mode hybrid ...` (fusion inside Qdrant).
The dataset must already be indexed (run `kret eval DATASET` once).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from kret.api import Kret
from kret.engine.search import SearchOptions
from kret.evaluators.beir import load_beir
from kret.evaluators.metrics import chunks_to_docs, evaluate
from kret.evaluators.runner import eval_collection_name


def rrf(lists, k, weights):
    out: dict[str, float] = {}
    for hits, w in zip(lists, weights, strict=True):
        for pos, (cid, _doc, _s) in enumerate(hits):
            out[cid] = out.get(cid, 0.0) + 1.0 / ((pos + 1) / w + k - 1)
    return out


def dbsf(lists, weights):
    out: dict[str, float] = {}
    for hits, w in zip(lists, weights, strict=True):
        if not hits:
            continue
        s = np.array([h[2] for h in hits])
        mu, sd = s.mean(), s.std()
        lo, hi = mu - 3 * sd, mu + 3 * sd
        for cid, _doc, score in hits:
            norm = 0.5 if hi == lo else (score - lo) / (hi - lo)
            out[cid] = out.get(cid, 0.0) + w * norm
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--max-queries", type=int)
    args = ap.parse_args()
    ds = load_beir(args.dataset)
    kr = Kret()
    info = kr.resolve_model()
    serving = f"{kr.settings.runtime}-{kr.settings.precision}"
    searcher = kr.open(eval_collection_name(ds, info.fingerprint, kr.settings.chunk_tokens, serving))
    qids = list(ds.queries)[: args.max_queries]
    branches = {}
    for mode in ("dense", "sparse"):
        res = []
        for i in range(0, len(qids), 64):
            batch = qids[i : i + 64]
            for hits in searcher.search_many([ds.queries[q] for q in batch], SearchOptions(k=100, mode=mode)):
                res.append(
                    [
                        (h.chunk_id, (h.payload.get("meta") or {}).get("source_id", h.doc_id), h.score)
                        for h in hits
                    ]
                )
        branches[mode] = res
    searcher.collection.close()
    qrels = {q: ds.qrels[q] for q in qids}
    doc_of = {cid: doc for mode in branches for hits in branches[mode] for cid, doc, _ in hits}

    def score(fused_per_query) -> float:
        run = {}
        for q, fused in zip(qids, fused_per_query, strict=True):
            top = sorted(fused.items(), key=lambda x: (-x[1], x[0]))[:100]
            run[q] = [(doc_of[c], s) for c, s in top]
        return evaluate(qrels, chunks_to_docs(run), ks=(10,), metrics=("ndcg",)).means["ndcg@10"]

    rows = [
        ("dense only", score([{c: s for c, _, s in h} for h in branches["dense"]])),
        ("sparse only", score([{c: s for c, _, s in h} for h in branches["sparse"]])),
    ]
    pairs = list(zip(branches["dense"], branches["sparse"], strict=True))
    for k in (60, 20, 10, 2):
        for wd, ws in ((1, 1), (1, 2), (2, 1), (1, 3)):
            rows.append(
                (f"rrf k={k} w(dense,sparse)=({wd},{ws})", score([rrf(p, k, (wd, ws)) for p in pairs]))
            )
    for wd, ws in ((1, 1), (1, 1.5), (1, 2)):
        rows.append((f"dbsf w=({wd},{ws})", score([dbsf(p, (wd, ws)) for p in pairs])))
    print(f"## {ds.name} ({len(qids)} queries), NDCG@10")
    for name, value in rows:
        print(f"| {name} | {value:.4f} |")


if __name__ == "__main__":
    main()
