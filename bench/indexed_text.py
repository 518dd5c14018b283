"""Which part of the indexed text makes kret differ from the reference systems on a BEIR set, per branch.

``kret eval`` indexes a BEIR corpus as a user's JSONL file: the loader cleans the text, ``Chunk.embed_text``
(the dense text; BM25's too before 2026-12-02) puts the title in front *unless the text already starts with
it*, and passages longer than the model's window are chunked (document score = max over its chunks). The reference ("bm25-kiwi", ../shared/docs/baselines.md)
scores ``title + " " + text`` whole. Scoring is at parity on identical text (``bench/sparse_parity.py``), so
this script changes one thing at a time and scores each variant with bm25s (lucene, k1 1.2, b 0.75) over
kret's Kiwi terms and, with ``--dense``, with the default model (exact cosine over every unit):

    beir           title + " " + raw text, whole passage              (the reference)
    cleaned        title + " " + kret's cleaned text, whole passage   (effect of the loader's cleaning)
    dedup          kret's title rule on the cleaned text, whole       (effect of not repeating the title)
    chunks-title   kret's chunks, each with the title always in front (chunking alone; BM25's text now)
    chunks         kret's chunks with embed_text's title rule        (BM25's text before 2026-12-02)

Each row gives NDCG@10 and Recall@10 with a 95 % bootstrap CI and the paired difference against ``beir``.

    python bench/indexed_text.py --dataset ../shared/data/bench/miracl-ko-mini --out OUT.json
    python bench/indexed_text.py --pairs ../shared/data/train/miracl-mrtydi-ko/train.jsonl --dense  # a dev set
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sparse_parity import load_beir, ndcg_at_k, recall_at_k  # noqa: E402

from kret.engine.embedder import Embedder  # noqa: E402
from kret.engine.sparse import KiwiBM25Encoder  # noqa: E402
from kret.evaluators.stats import bootstrap_ci, paired_test  # noqa: E402
from kret.indexer.document import Chunk  # noqa: E402

DEPTH = 100


def kret_documents(corpus: Path) -> dict[str, tuple[str, str]]:
    """BEIR id → (title, cleaned text) exactly as kret's JSONL loader reads the corpus file."""
    from kret.indexer.loaders.core import load_file

    docs = load_file(corpus, corpus.parent)
    out: dict[str, tuple[str, str]] = {}
    for d in docs:
        beir_id = str(d.metadata["source_id"])
        out[beir_id] = (d.title, d.text)
    return out


def default_embedder() -> Embedder:
    from kret.api import Kret

    k = Kret()
    return k.embedder(k.resolve_model())


def kret_chunks(docs: dict[str, tuple[str, str]], emb: Embedder) -> list[tuple[str, Chunk, str]]:
    """(BEIR id, chunk, title) with kret's default chunker and the default model's tokenizer."""
    from kret.api import Kret
    from kret.indexer.chunker import Chunker, ChunkingParams
    from kret.indexer.document import Document

    k = Kret()
    size = k.settings.chunk_tokens or (emb.max_seq_length - emb.prompt_overhead)  # as Kret._create
    params = ChunkingParams(size, min(k.settings.chunk_overlap, size // 2))
    chunker = Chunker(emb.count_tokens, params, emb.token_offsets)
    out = []
    for did, (title, text) in docs.items():
        for c in chunker.chunk(
            Document(doc_id=did, text=text, path="corpus.jsonl", source_type="jsonl", title=title)
        ):
            out.append((did, c, title))
    return out


def beir_from_pairs(pairs: Path, folder: Path) -> Path:
    """A BEIR folder whose corpus is the pairs' distinct positives and whose qrels are the pairs."""
    corpus: dict[str, tuple[str, str]] = {}
    queries: dict[str, str] = {}
    qrels: set[tuple[str, str]] = set()
    with open(pairs, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            doc = str(row["positive_curid"])
            corpus.setdefault(doc, (row.get("positive_title", ""), row["positive"]))
            queries.setdefault(str(row["query_id"]), row["query"])
            qrels.add((str(row["query_id"]), doc))
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as f:
        for doc, (title, text) in corpus.items():
            f.write(json.dumps({"_id": doc, "title": title, "text": text}, ensure_ascii=False) + "\n")
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as f:
        for qid, text in queries.items():
            f.write(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n")
    with open(folder / "qrels" / "test.tsv", "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        f.writelines(f"{q}\t{d}\t1\n" for q, d in sorted(qrels))
    return folder


def best_per_document(unit_doc: list[str], scores: np.ndarray, *, positive_only: bool = False) -> list[str]:
    """The documents of the top units, each scored by its best unit (kret's document score); BM25 ranks
    only units that share a term with the query (``positive_only``)."""
    top = np.argsort(-scores, kind="stable")[: DEPTH * 4]
    best: dict[str, float] = {}
    for i in top:
        if positive_only and scores[i] <= 0:
            break
        best.setdefault(unit_doc[i], float(scores[i]))
    return sorted(best, key=lambda d: -best[d])[:DEPTH]


class DenseRanker:
    """Exact cosine search over every unit (no HNSW: the text is the only thing that changes); a text two
    variants share is embedded once."""

    def __init__(self, emb: Embedder, queries: list[tuple[str, str]]) -> None:
        self.emb = emb
        self.query_vectors = emb.encode_queries([q for _, q in queries])
        self.cache: dict[str, np.ndarray] = {}

    def __call__(self, unit_doc: list[str], unit_text: list[str]) -> list[list[str]]:
        new = sorted({t for t in unit_text if t not in self.cache})
        if new:
            self.cache.update(zip(new, self.emb.encode_passages(new), strict=True))
        units = np.stack([self.cache[t] for t in unit_text])
        return [best_per_document(unit_doc, units @ v) for v in self.query_vectors]


def sparse_runs(
    enc: KiwiBM25Encoder, unit_doc: list[str], unit_text: list[str], queries: list[tuple[str, str]]
) -> list[list[str]]:
    """Rank units with bm25s over Kiwi terms; a document's score is the best of its units."""
    import bm25s

    terms = enc.terms_batch(unit_text)
    vocab: dict[str, int] = {}
    ids = [[vocab.setdefault(t, len(vocab)) for t in ts] for ts in terms]
    retriever = bm25s.BM25(method="lucene", k1=1.2, b=0.75)
    retriever.index(bm25s.tokenization.Tokenized(ids=ids, vocab=vocab), show_progress=False)
    q_terms = enc.terms_batch([q for _, q in queries])
    runs = []
    for qt in q_terms:
        q_ids = [vocab[t] for t in qt if t in vocab]
        if not q_ids:
            runs.append([])
            continue
        scores = retriever.get_scores(q_ids)
        runs.append(best_per_document(unit_doc, scores, positive_only=True))
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", type=Path, help="a BEIR folder")
    src.add_argument(
        "--pairs",
        type=Path,
        help="query → passage training pairs (query, positive, positive_title, query_id, positive_curid): "
        "a development set made of the positives, for deciding without the benchmarks' test queries",
    )
    ap.add_argument("--dense", action="store_true", help="also score every variant with the default model")
    ap.add_argument(
        "--variants", default="", help="comma-separated subset (default: all; 'beir' always runs)"
    )
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.pairs:
        args.dataset = beir_from_pairs(args.pairs, Path(tempfile.mkdtemp(prefix="kret-indexed-text-")))

    doc_ids, beir_texts, queries, qrels = load_beir(args.dataset)
    raw = {}
    with open(args.dataset / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            raw[str(row["_id"])] = (row.get("title", ""), row.get("text", ""))
    kret_docs = kret_documents(args.dataset / "corpus.jsonl")
    missing = set(doc_ids) - set(kret_docs)
    if missing:
        raise SystemExit(f"{len(missing)} corpus ids not read by kret's loader, e.g. {sorted(missing)[:3]}")
    emb = default_embedder()
    chunks = kret_chunks(kret_docs, emb)

    def dedup(title: str, text: str) -> str:
        head = title if title and title not in text[: len(title) + 8] else ""
        return f"{head} {text}".strip() if head else text

    variants = {
        "beir": (doc_ids, beir_texts),
        "cleaned": (doc_ids, [f"{kret_docs[d][0]} {kret_docs[d][1]}".strip() for d in doc_ids]),
        "dedup": (doc_ids, [dedup(*kret_docs[d]) for d in doc_ids]),
        "chunks-title": ([d for d, _, _ in chunks], [f"{t} {c.text}".strip() for _, c, t in chunks]),
        "chunks": ([d for d, _, _ in chunks], [c.embed_text for _, c, _ in chunks]),
    }
    if args.variants:
        keep = {"beir", *args.variants.split(",")}
        variants = {k: v for k, v in variants.items() if k in keep}
    n_title_start = sum(1 for d in doc_ids if raw[d][0] and raw[d][0] in raw[d][1][: len(raw[d][0]) + 8])
    n_chunked = len({d for d, c, _ in chunks if c.chunk_index > 0})
    n_cleaned = sum(1 for d in doc_ids if kret_docs[d][1] != raw[d][1])
    print(
        f"{args.dataset.name}: {len(doc_ids)} passages, {len(queries)} queries; title at the text's start: "
        f"{n_title_start}; passages chunked: {n_chunked} ({len(chunks)} chunks); text changed by cleaning: {n_cleaned}"
    )
    enc = KiwiBM25Encoder()
    branches = {"sparse": lambda d, t: sparse_runs(enc, d, t, queries)}
    if args.dense:
        branches["dense"] = DenseRanker(emb, queries)
    rows = []
    for branch, rank in branches.items():
        per_query: dict[str, np.ndarray] = {}
        seen: dict[tuple[str, ...], list[list[str]]] = {}  # identical unit texts rank identically
        for name, (unit_doc, unit_text) in variants.items():
            key = tuple(unit_text)
            runs = seen[key] if key in seen else seen.setdefault(key, rank(unit_doc, unit_text))
            nd = np.array([ndcg_at_k(r, qrels[q]) for r, (q, _) in zip(runs, queries, strict=True)])
            rc = np.array([recall_at_k(r, qrels[q]) for r, (q, _) in zip(runs, queries, strict=True)])
            per_query[name] = nd
            row = {
                "branch": branch,
                "variant": name,
                "units": len(unit_text),
                "ndcg@10": round(float(nd.mean()), 4),
                "ndcg@10_ci": [round(x, 4) for x in bootstrap_ci(nd)],
                "recall@10": round(float(rc.mean()), 4),
            }
            if name != "beir":
                row["vs_beir"] = {
                    k: round(v, 4) for k, v in paired_test(per_query["beir"], nd)._asdict().items()
                }
            rows.append(row)
            print(json.dumps(row, ensure_ascii=False))
    if args.out:
        args.out.write_text(
            json.dumps({"dataset": str(args.dataset), "rows": rows}, indent=1), encoding="utf-8"
        )


if __name__ == "__main__":
    main()
