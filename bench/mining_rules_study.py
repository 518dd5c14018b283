"""Per-rule counts of the hard-negative mining rules on one collection, from one pass over the search.

Mining the same training queries once per rule set would embed and search every query again each time; here
the searcher is wrapped so that search lists and query embeddings are computed once and reused, and every
rule set sees exactly the same candidates. The split is the one `kret train finetune` makes (same queries
file, fraction, group key and seed), so the training queries and the held-out/dev documents excluded from
mining are the run's.

    KRET_HOME=.kret/ft-home python bench/mining_rules_study.py -c korquad \
        --queries .kret/ft-data/korquad-queries.jsonl --heldout 0.3 --heldout-by title \
        --out .kret/ft-data/mining-rules.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

CONFIGS: dict[str, dict[str, Any]] = {
    "margin 0.95 (old default)": {"rules": ("margin",), "margin": 0.95},
    "margin 0.99": {"rules": ("margin",), "margin": 0.99},
    "rescaled 0.95": {"rules": ("rescaled",), "rescaled_max": 0.95},
    "rank_guard": {"rules": ("rank_guard",)},
    "rescaled 0.95 + rank_guard (new default)": {"rules": ("rescaled", "rank_guard")},
    "consistency top-10 + rescaled + rank_guard": {
        "rules": ("rescaled", "rank_guard", "consistency"),
        "consistency_top_k": 10,
    },
    "no guard": {"rules": ()},
}


class _Memo:
    """Memoises ``search_many`` per (texts, mode) and the embedder's ``encode_queries`` per texts."""

    def __init__(self, searcher: Any) -> None:
        self._s = searcher
        self.collection = searcher.collection
        self.embedder = _MemoEmbedder(searcher.embedder)
        self._hits: dict[tuple, Any] = {}

    def search_many(self, texts, opts):
        key = (tuple(texts), opts.mode, opts.k)
        if key not in self._hits:
            self._hits[key] = self._s.search_many(texts, opts)
        return self._hits[key]


class _MemoEmbedder:
    def __init__(self, embedder: Any) -> None:
        self._e = embedder
        self.prompts = embedder.prompts
        self._q: dict[tuple, Any] = {}

    def encode_queries(self, texts):
        key = tuple(texts)
        if key not in self._q:
            self._q[key] = self._e.encode_queries(list(texts))
        return self._q[key]

    def encode_passages(self, texts):
        return self._e.encode_passages(texts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-c", "--collection", required=True)
    ap.add_argument("--queries", required=True, type=Path)
    ap.add_argument("--heldout", type=float, default=0.3)
    ap.add_argument("--dev", type=float, default=0.1)
    ap.add_argument("--heldout-by", default="title")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mode", default="dense")
    ap.add_argument("--negatives", type=int, default=4)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    from kret.api import Kret
    from kret.trainer.mining import mine_negatives
    from kret.trainer.queries import CollectionCatalog, load_queries_file
    from kret.trainer.split import split_queries

    kr = Kret()
    searcher = kr.open(args.collection)
    try:
        catalog = CollectionCatalog.from_store(searcher.collection.store)
        queries, qstats = load_queries_file(args.queries, catalog, embedder=searcher.embedder)
        split = split_queries(
            queries,
            catalog,
            heldout_fraction=args.heldout,
            dev_fraction=args.dev,
            by=args.heldout_by,
            seed=args.seed,
        )
        memo = _Memo(searcher)
        out = {
            "collection": args.collection,
            "model": searcher.embedder.info.name,
            "fingerprint": searcher.embedder.info.fingerprint,
            "queries_file_sha256": qstats.file_sha256,
            "split": split.counts,
            "configs": {},
        }
        print(json.dumps(out["split"]), flush=True)
        for name, kw in CONFIGS.items():
            t = time.perf_counter()
            res = mine_negatives(
                memo,
                split.train,
                mode=args.mode,
                n_negatives=args.negatives,
                exclude_docs=split.excluded_docs,
                catalog=catalog,
                seed=args.seed,
                **kw,
            )
            stats = res.stats.as_dict()
            stats["seconds"] = round(time.perf_counter() - t, 1)
            out["configs"][name] = stats
            print(
                name,
                json.dumps(
                    {k: v for k, v in stats.items() if not k.startswith(("removed_rule", "dropped_rule"))}
                ),
                flush=True,
            )
    finally:
        searcher.collection.close()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, ensure_ascii=False, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
