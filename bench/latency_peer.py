"""Search latency of kret's three modes on a ≥20k-chunk collection, against the pipeline a user might build
instead: LangChain's ``QdrantVectorStore`` over qdrant-client local mode with the same model.

    python bench/latency_peer.py --collection eval-korquad-dev-hard-a8de650c-df7b7ed3-cauto \
        --queries ../shared/data/bench/korquad-dev-hard/queries.jsonl --n 200
    python bench/latency_peer.py --dataset ../shared/data/bench/korquad-dev-hard --n 200   # the collection
                                 # `kret eval` built for it with the current default model (regress.py)

Same queries, one at a time, top 10, in one run. The peer gets the very vectors kret stored (no second
embedding pass), in LangChain's own collection layout, and embeds each query with the same model and prompt.
Needs ``pip install langchain-qdrant`` (not a kret dependency).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from index_search import pct, time_modes  # bench/ is the script's folder, so on sys.path

from kret.api import Kret


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--collection", help="an existing collection (or --dataset)")
    ap.add_argument("--queries", type=Path, help="queries.jsonl (default: the dataset's)")
    ap.add_argument(
        "--dataset", type=Path, help="BEIR folder: search the collection `kret eval` built for it"
    )
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--out", type=Path, default=Path("bench/out/latency_peer.json"))
    args = ap.parse_args()

    from langchain_core.embeddings import Embeddings
    from langchain_qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient, models

    kr = Kret()
    if args.dataset is not None:
        # The same name `kret eval` gives the index, so a model change cannot leave a stale literal here.
        from kret.evaluators.beir import load_beir
        from kret.evaluators.runner import eval_collection_name

        ds = load_beir(args.dataset)
        serving = f"{kr.settings.runtime}-{kr.settings.precision}"  # as evaluators/runner.py names it
        args.collection = args.collection or eval_collection_name(
            ds, kr.resolve_model().fingerprint, kr.settings.chunk_tokens, serving
        )
        args.queries = args.queries or args.dataset / "queries.jsonl"
    if not args.collection or not args.queries:
        ap.error("give --dataset, or --collection and --queries")
    queries = [json.loads(line)["text"] for line in args.queries.open(encoding="utf-8")][: args.n]
    searcher = kr.open(args.collection)
    emb = searcher.embedder
    n_chunks = searcher.collection.store.count_chunks()

    result = {f"kret-{mode}": value for mode, value in time_modes(searcher, queries).items()}

    # The peer: same vectors and payload text in qdrant-client local mode, searched through LangChain.
    class SameModel(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return emb.encode_passages(texts).tolist()

        def embed_query(self, text: str) -> list[float]:
            return emb.encode_queries([text])[0].tolist()

    client = QdrantClient(":memory:")
    client.create_collection(
        "peer", vectors_config=models.VectorParams(size=emb.dimension, distance=models.Distance.COSINE)
    )
    batch = []
    for p in searcher.collection.store.scroll_chunks(with_vectors=True):
        batch.append(
            models.PointStruct(
                id=p.id,
                vector=list(p.dense),
                payload={"page_content": p.payload["text"], "metadata": {"doc_id": p.payload["doc_id"]}},
            )
        )
        if len(batch) == 1000:
            client.upsert("peer", batch)
            batch = []
    if batch:
        client.upsert("peer", batch)
    searcher.collection.close()
    store = QdrantVectorStore(client=client, collection_name="peer", embedding=SameModel())
    store.similarity_search(queries[0], k=10)
    times = []
    for q in queries:
        t = time.perf_counter()
        store.similarity_search(q, k=10)
        times.append((time.perf_counter() - t) * 1000)
    result["langchain-qdrant-local"] = {"p50_ms": pct(times, 50), "p95_ms": pct(times, 95)}
    peer = result["langchain-qdrant-local"]["p50_ms"]
    for name in list(result):
        result[name]["p50_ratio_vs_peer"] = round(result[name]["p50_ms"] / peer, 3)
    record = {
        "collection": args.collection,
        "chunks": n_chunks,
        "queries": len(queries),
        "latency": result,
        "load_avg_1m": os.getloadavg()[0],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
