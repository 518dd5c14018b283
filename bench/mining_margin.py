"""Where a mining run's margin rule bites: the positive's rank and the rank-3 score ratio, per query text.

Re-runs the training queries of a finished ``kret train finetune`` run against its collection with the
parent model (dense, top 50) and splits them by whether any mined row kept their text.

    KRET_HOME=.kret/bench-home python bench/mining_margin.py --run ft-mrtydi-1 -c mrtydi
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from kret.api import Kret
from kret.engine.search import SearchOptions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="run name under KRET_HOME/runs")
    ap.add_argument("-c", "--collection", required=True)
    args = ap.parse_args()
    kr = Kret()
    run = Path(kr.settings.home) / "runs" / args.run
    train = [json.loads(line) for line in (run / "queries.jsonl").open(encoding="utf-8")]
    kept = {json.loads(line)["anchor"] for line in (run / "mined.jsonl").open(encoding="utf-8")}
    searcher = kr.open(args.collection)
    try:
        opts = SearchOptions(k=50, mode="dense")
        results = []
        for i in range(0, len(train), 64):
            results += searcher.search_many([q["query"] for q in train[i : i + 64]], opts)
    finally:
        searcher.collection.close()
    groups: dict[str, dict[str, tuple[int | None, float | None]]] = {"kept": {}, "dropped": {}}
    for q, hits in zip(train, results, strict=True):
        rank = next((j + 1 for j, h in enumerate(hits) if h.doc_id == q["positive_doc_id"]), None)
        ratio = None
        if rank is not None and len(hits) > 2:
            ratio = hits[2].score / hits[rank - 1].score
        side = "kept" if q["query"] in kept else "dropped"
        best = groups[side].get(q["query"])
        if best is None or (rank is not None and (best[0] is None or rank < best[0])):
            groups[side][q["query"]] = (rank, ratio)  # a text with several positives: its best positive
    summary = {}
    for side, by_text in groups.items():
        ranks = [r for r, _ in by_text.values() if r is not None]
        ratios = [x for _, x in by_text.values() if x is not None]
        summary[side] = {
            "query_texts": len(by_text),
            "positive_in_top50": len(ranks),
            "median_rank": statistics.median(ranks) if ranks else None,
            "rank1": sum(r == 1 for r in ranks),
            "median_score3_over_positive": round(statistics.median(ratios), 4) if ratios else None,
        }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
