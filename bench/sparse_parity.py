"""Parity of kret's lexical branch with the reference "bm25-kiwi" system on a BEIR dataset.

(a) bm25s (method lucene, k1=1.2, b=0.75) over Kiwi content morphemes — the reference in
    ../shared/docs/baselines.md;
(b) KiwiBM25Encoder vectors in a real Qdrant Edge shard, sparse query on ``lex`` with the IDF modifier.

Both see the same Kiwi terms, so any difference comes from the scoring path (float32 ties, hash
collisions, N counting docs without terms). The issue's bar: |ΔNDCG@10| ≤ 0.01.

    python bench/sparse_parity.py --dataset ../shared/data/bench/korquad-dev
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from kret.engine.sparse import KiwiBM25Encoder, term_id

K = 10


def load_beir(folder: Path) -> tuple[list[str], list[str], list[tuple[str, str]], dict[str, dict[str, int]]]:
    doc_ids, texts = [], []
    with open(folder / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            doc_ids.append(str(row["_id"]))
            texts.append((row.get("title", "") + " " + row.get("text", "")).strip())
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    with open(folder / "qrels" / "test.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            qid, did, score = line.rstrip("\n").split("\t")
            if int(score) > 0:
                qrels[qid][did] = int(score)
    queries = []
    with open(folder / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if str(row["_id"]) in qrels:
                queries.append((str(row["_id"]), row["text"]))
    return doc_ids, texts, queries, qrels


def ndcg_at_k(ranked: list[str], rels: dict[str, int], k: int = K) -> float:
    """Linear gain = qrel score, discount log2(rank + 1), ideal DCG from the qrels (baselines.md)."""
    dcg = sum(rels.get(d, 0) / math.log2(r + 2) for r, d in enumerate(ranked[:k]))
    ideal = sum(g / math.log2(r + 2) for r, g in enumerate(sorted(rels.values(), reverse=True)[:k]))
    return dcg / ideal if ideal > 0 else 0.0


def recall_at_k(ranked: list[str], rels: dict[str, int], k: int = K) -> float:
    return sum(1 for d in ranked[:k] if d in rels) / len(rels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--dataset", type=Path, required=True, help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/)"
    )
    ap.add_argument("--limit", type=int, default=0, help="evaluate only the first N queries (0 = all)")
    ap.add_argument("--k1", type=float, default=1.2)
    ap.add_argument("--b", type=float, default=0.75)
    ap.add_argument("--batch", type=int, default=512, help="Kiwi / upsert batch size")
    args = ap.parse_args()

    import bm25s
    from qdrant_edge import (
        EdgeConfig,
        EdgeShard,
        EdgeSparseVectorParams,
        Modifier,
        Point,
        Query,
        QueryRequest,
        SparseVector,
        UpdateOperation,
    )

    from kret.korean import get_kiwi

    doc_ids, texts, queries, qrels = load_beir(args.dataset)
    if args.limit:
        queries = queries[: args.limit]
    print(f"dataset {args.dataset}: {len(texts)} docs, {len(queries)} queries")

    enc = KiwiBM25Encoder(k1=args.k1, b=args.b)
    t = time.perf_counter()
    get_kiwi()
    print(f"kiwi load            {time.perf_counter() - t:8.2f} s  (workers={get_kiwi().num_workers})")

    t = time.perf_counter()
    doc_terms: list[list[str]] = []
    for i in range(0, len(texts), args.batch):
        doc_terms.extend(enc.terms_batch(texts[i : i + args.batch]))
    dt = time.perf_counter() - t
    n_chars = sum(map(len, texts))
    print(
        f"kiwi tokenize docs   {dt:8.2f} s  {len(texts) / dt:7.0f} docs/s  {n_chars / dt / 1000:5.0f}k chars/s"
    )
    t = time.perf_counter()
    q_terms = enc.terms_batch([q for _, q in queries])
    dt = time.perf_counter() - t
    print(f"kiwi tokenize queries{dt:8.2f} s  {1000 * dt / max(1, len(queries)):7.3f} ms/query (batch)")

    vocab = {w for terms in doc_terms for w in terms}
    ids: dict[int, set[str]] = defaultdict(set)
    for w in vocab:
        ids[term_id(w)].add(w)
    n_coll = sum(1 for s in ids.values() if len(s) > 1)
    v = len(vocab)
    print(f"vocabulary {v} terms, {n_coll} colliding ids (expected ~{v * (v - 1) / 2 / 2**31:.2f} pairs)")
    n_empty = sum(1 for terms in doc_terms if not terms)
    if n_empty:
        print(f"{n_empty} docs without terms (counted in bm25s's N, not in Qdrant's)")

    # (b) Qdrant Edge shard with the IDF modifier
    avgdl = sum(map(len, doc_terms)) / len(doc_terms)
    t = time.perf_counter()
    vecs = enc.encode_documents(doc_terms, avgdl)
    t_enc = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        shard = EdgeShard.create(
            str(Path(tmp) / "shard"),
            EdgeConfig(sparse_vectors={"lex": EdgeSparseVectorParams(modifier=Modifier.Idf)}),
        )
        try:
            t = time.perf_counter()
            points = [
                Point(i, {"lex": SparseVector(vec.indices, vec.values)})
                for i, vec in enumerate(vecs)
                if len(vec)
            ]
            for i in range(0, len(points), args.batch):
                shard.update(UpdateOperation.upsert_points(points[i : i + args.batch]))
            shard.flush()
            t_up = time.perf_counter() - t
            print(
                f"encode_documents     {t_enc:8.2f} s;  upsert+flush {t_up:.2f} s ({len(points) / t_up:.0f} points/s)"
            )
            run_ours: list[list[str]] = []
            lat_ours = []
            for terms in q_terms:
                t = time.perf_counter()
                q = enc.encode_query_terms(terms)
                hits = (
                    shard.query(
                        QueryRequest(
                            limit=K, query=Query.Nearest(SparseVector(q.indices, q.values), using="lex")
                        )
                    )
                    if len(q)
                    else []
                )
                run_ours.append([doc_ids[int(h.id)] for h in hits])
                lat_ours.append(time.perf_counter() - t)
        finally:
            shard.close()

    # (a) bm25s reference, after (b) so that each top-10 can be compared with bm25s's full score array
    t = time.perf_counter()
    retriever = bm25s.BM25(method="lucene", k1=args.k1, b=args.b)
    retriever.index(doc_terms, show_progress=False)
    print(f"bm25s index          {time.perf_counter() - t:8.2f} s")
    pos = {d: i for i, d in enumerate(doc_ids)}
    run_ref: list[list[str]] = []
    lat_ref = []
    tie_only = 0  # lists that differ only in the order of (near-)equal scores
    for terms, ours in zip(q_terms, run_ours, strict=True):
        t = time.perf_counter()
        known = [w for w in terms if w in retriever.vocab_dict]
        scores = retriever.get_scores(known) if known else np.zeros(len(doc_ids), dtype=np.float32)
        top = [int(i) for i in np.argsort(-scores, kind="stable")[:K] if scores[i] > 0]
        run_ref.append([doc_ids[i] for i in top])
        lat_ref.append(time.perf_counter() - t)
        if run_ref[-1] != ours and len(ours) == len(top):
            mine = np.array([scores[pos[d]] for d in ours], dtype=np.float64)
            theirs = scores[top].astype(np.float64)
            tie_only += bool(np.allclose(mine, theirs, rtol=1e-5, atol=0))

    def report(name: str, run: list[list[str]], lat: list[float]) -> tuple[float, float]:
        nd = statistics.fmean(ndcg_at_k(r, qrels[qid]) for (qid, _), r in zip(queries, run, strict=True))
        rc = statistics.fmean(recall_at_k(r, qrels[qid]) for (qid, _), r in zip(queries, run, strict=True))
        ms = sorted(x * 1000 for x in lat)
        print(
            f"{name:<22} NDCG@10 {nd:.4f}  Recall@10 {rc:.4f}  query median {ms[len(ms) // 2]:.3f} ms, "
            f"p90 {ms[int(len(ms) * 0.9)]:.3f} ms (scoring only, terms given)"
        )
        return nd, rc

    print()
    nd_a, rc_a = report("(a) bm25s", run_ref, lat_ref)
    nd_b, rc_b = report("(b) kret/Qdrant Edge", run_ours, lat_ours)
    same = sum(a == b for a, b in zip(run_ref, run_ours, strict=True)) / max(1, len(queries))
    same_set = sum(set(a) == set(b) for a, b in zip(run_ref, run_ours, strict=True)) / max(1, len(queries))
    print(f"difference (b − a)     NDCG@10 {nd_b - nd_a:+.4f}  Recall@10 {rc_b - rc_a:+.4f}")
    print(
        f"identical top-10 lists {same:.4f} (as sets {same_set:.4f}); "
        f"{tie_only} of {sum(a != b for a, b in zip(run_ref, run_ours, strict=True))} differing lists differ only "
        "in the order of equal bm25s scores"
    )
    n_diff = sum(a != b for a, b in zip(run_ref, run_ours, strict=True))
    print(f"differing lists not explained by equal scores: {n_diff - tie_only}")
    print(f"acceptance |ΔNDCG@10| <= 0.01: {'PASS' if abs(nd_b - nd_a) <= 0.01 else 'FAIL'}")


if __name__ == "__main__":
    main()
