"""Save each branch's top 100 (ids and scores) per query, so fusion methods can be replayed offline.

    KRET_HOME=.kret/bench-home KRET_TORCH_THREADS=1 \
        python bench/branch_runs.py --dataset ../shared/data/bench/korquad-dev --out .kret/branches

Indexes the dataset exactly as ``kret eval`` does (same collection name, so an existing eval index is
reused), then runs every query through ``Searcher.search_many`` once with ``--mode dense`` and once with
``--mode sparse``, top 100 chunks each. One JSON line per query: its id, its Kiwi terms, and per branch
``[chunk_id, doc_id, score]`` in rank order. A second file holds the collection's document frequency of
every term id, so term statistics (IDF mass) can be studied without the index. ``bench/fusion_replay.py``
reads both.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from collections import Counter
from pathlib import Path

from kret.api import Kret
from kret.engine.search import SearchOptions
from kret.evaluators.beir import load_beir
from kret.evaluators.runner import eval_collection_name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument(
        "--modes",
        default="dense,sparse",
        help="branches to save; 'dense-exact' = dense without HNSW (brute force)",
    )
    args = ap.parse_args()
    modes = args.modes.split(",")
    ds = load_beir(args.dataset)
    kr = Kret()
    info = kr.resolve_model()
    name = eval_collection_name(
        ds, info.fingerprint, kr.settings.chunk_tokens, f"{kr.settings.runtime}-{kr.settings.precision}"
    )
    t0 = time.perf_counter()
    summary = kr.index(
        [args.dataset / "corpus.jsonl"], collection=name, model=info.source or info.path, mirror=True
    )
    index_s = time.perf_counter() - t0
    print(f"{ds.name}: indexed in {index_s:.0f}s ({summary.added} added)", flush=True)

    searcher = kr.open(name)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        df: Counter[int] = Counter()
        n_points = 0
        for point in searcher.collection.store.scroll_chunks(with_vectors=True):
            if point.sparse is not None and len(point.sparse):
                n_points += 1
                df.update(point.sparse.indices)
        qids = list(ds.queries)
        runs: dict[str, list] = {m: [] for m in modes}
        query_s: dict[str, float] = {}
        for mode in modes:
            t = time.perf_counter()
            for i in range(0, len(qids), 64):
                batch = qids[i : i + 64]
                opts = SearchOptions(
                    k=args.depth, mode=mode.removesuffix("-exact"), exact=mode.endswith("-exact")
                )
                for hits in searcher.search_many([ds.queries[q] for q in batch], opts):
                    runs[mode].append(
                        [
                            [h.chunk_id, (h.payload.get("meta") or {}).get("source_id", h.doc_id), h.score]
                            for h in hits
                        ]
                    )
            query_s[mode] = time.perf_counter() - t
            print(f"{ds.name}: {mode} {len(qids)} queries in {query_s[mode]:.0f}s", flush=True)
        encoder = searcher.encoder
        manifest = searcher.collection.manifest
        n_chunks = searcher.collection.store.count_chunks()
    finally:
        searcher.collection.close()

    path = args.out / f"{ds.name}.branches.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for i, q in enumerate(qids):
            row = {"qid": q, "terms": encoder.terms(ds.queries[q]), "qrels": ds.qrels[q]}
            row.update({m: runs[m][i] for m in modes})
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    meta = {
        "dataset": ds.name,
        "data_hash": ds.data_hash,
        "collection": name,
        "model": {"name": info.name, "fingerprint": info.fingerprint},
        "chunking": manifest["chunking"],
        # index_s is a from-scratch build only when added == the corpus size (an existing index is reused)
        "index_s": index_s,
        "added": summary.added,
        "n_chunks": n_chunks,
        "query_s": query_s,
        "n_points_with_terms": n_points,
        "df": {str(k): v for k, v in df.items()},
    }
    (args.out / f"{ds.name}.meta.json").write_text(json.dumps(meta))
    print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
