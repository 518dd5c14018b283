"""The embedded store at a million chunks: build time, disk, peak RSS of indexing and of searching, latency.

    python bench/store_scale.py build --chunks 1000000 --dir /tmp/kret-scale     # one process
    python bench/store_scale.py search --dir /tmp/kret-scale --queries 300       # a fresh process (--hnsw-ef N)
    python bench/store_scale.py build --chunks 100000 --dir /tmp/kret-scale-100k # a smaller point

No model runs: embedding a million chunks would take days on this machine and tells nothing about the
store. The chunks are synthetic but shaped like kret's (``bench/README.md`` §11 says how they compare):

- dense: 384-d unit vectors around 4,096 random centres (cosine to the centre ~0.85, like e5's narrow band);
- sparse: ~110 distinct term ids per chunk drawn from a Zipf law over a 400k-term vocabulary, BM25-like
  weights, as kret's Kiwi encoder writes them (IDF applied by Qdrant's modifier);
- payload: kret's own chunk payload (``engine/ingest.py::chunk_payload``) with ~800 characters of real
  Korean text (random Korean Wikipedia sentences), 4 chunks per document plus kret's document marker.

Everything goes through kret's store contract (``EdgeStore.write_documents``, ``finalize``, ``query`` with
the ``kind = "chunk"`` condition every search carries), in batches of 256 documents, so the numbers include
kret's own write path. ``search`` reopens the collection in a new process and times ``--queries`` dense,
sparse and hybrid (DBSF, 100 per branch) queries after 20 warm-up queries each, and checks HNSW's recall@10
against exact search on 50 dense queries. RSS is the process's ``ru_maxrss`` (peak) and ``VmRSS`` (now,
which includes the pages of memory-mapped files the kernel keeps resident). Prints one JSON object per step.
"""

from __future__ import annotations

import argparse
import bz2
import json
import os
import resource
import shutil
import time
import uuid
from pathlib import Path

import numpy as np

from kret.engine.edge_store import EdgeStore
from kret.engine.store import DEFAULT_HNSW_EF, Condition, DocumentWrite, QuerySpec
from kret.engine.types import SparseVec

KOWIKI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kowiki" / "text"
DIM = 384
CENTRES = 4096
VOCAB = 400_000
CHUNKS_PER_DOC = 4
TEXT_CHARS = 800
SEED = 0


def rss_now(field: str = "VmRSS") -> float:
    """GB resident now: ``VmRSS`` = ``RssAnon`` (the process's own memory) + ``RssFile`` (pages of mapped
    files — Qdrant's mmap storage — that the kernel keeps in memory and can drop under pressure)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / 1e9
    return float("nan")


def rss_parts() -> dict[str, float]:
    return {f"{k.lower()}_gb": round(rss_now(k), 2) for k in ("VmRSS", "RssAnon", "RssFile")}


def rss_peak() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def disk_bytes(path: Path) -> int:
    """Blocks actually allocated (sparse pre-allocated files count only what is backed)."""
    total = 0
    for p in path.rglob("*"):
        if p.is_file():
            total += p.stat().st_blocks * 512
    return total


def korean_sentences(limit: int = 60_000) -> list[str]:
    out: list[str] = []
    for f in sorted(KOWIKI.rglob("wiki_*.bz2")):
        with bz2.open(f, "rt", encoding="utf-8") as src:
            for line in src:
                line = line.strip()
                if line and not line.startswith(("<doc", "</doc")):
                    out.extend(s.strip() + "." for s in line.split(".") if len(s.strip()) > 10)
        if len(out) >= limit:
            break
    if not out:
        raise SystemExit(f"no Korean text under {KOWIKI}")
    return out[:limit]


class Synth:
    """Deterministic synthetic chunks: the same --chunks and seed give the same collection."""

    def __init__(self, seed: int = SEED) -> None:
        shape = np.random.default_rng(SEED)  # centres and vocabulary: the same for the corpus and the queries
        self.rng = np.random.default_rng(seed)  # the draws: another seed gives other chunks or queries
        c = shape.standard_normal((CENTRES, DIM)).astype(np.float32)
        self.centres = c / np.linalg.norm(c, axis=1, keepdims=True)
        ranks = np.arange(1, VOCAB + 1, dtype=np.float64)
        p = 1.0 / ranks**1.05
        self.term_cdf = np.cumsum(p / p.sum())
        # term ids are 32-bit hashes in kret (engine/sparse.py): a fixed random map from Zipf rank to id
        self.term_ids = shape.choice(2**31 - 1, size=VOCAB, replace=False).astype(np.int64)
        self.sentences = korean_sentences()

    def dense(self, n: int, noise: float = 0.035) -> tuple[np.ndarray, np.ndarray]:
        which = self.rng.integers(0, CENTRES, n)
        v = self.centres[which] + noise * self.rng.standard_normal((n, DIM)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True), which

    def sparse(self, n_terms: int) -> SparseVec:
        draws = np.searchsorted(self.term_cdf, self.rng.random(n_terms))
        ranks = np.unique(np.minimum(draws, VOCAB - 1))
        tf = self.rng.geometric(0.6, size=len(ranks)).astype(np.float64)
        k1, b = 1.2, 0.75
        weights = tf * (k1 + 1) / (tf + k1 * (1 - b + b * self.rng.uniform(0.6, 1.4)))
        return SparseVec(self.term_ids[ranks].tolist(), weights.round(4).tolist())

    def text(self) -> str:
        parts: list[str] = []
        size = 0
        while size < TEXT_CHARS:
            s = self.sentences[int(self.rng.integers(len(self.sentences)))]
            parts.append(s)
            size += len(s) + 1
        return " ".join(parts)[:TEXT_CHARS]

    def documents(self, start: int, n_docs: int) -> list[DocumentWrite]:
        vecs, _ = self.dense(n_docs * CHUNKS_PER_DOC)
        out = []
        for d in range(n_docs):
            doc_no = start + d
            doc_id = f"doc-{doc_no:08d}"
            doc_hash = f"{doc_no:064x}"
            path = f"/data/corpus/{doc_no // 1000:05d}/{doc_id}.txt"
            points = []
            for i in range(CHUNKS_PER_DOC):
                sv = self.sparse(int(self.rng.poisson(140)))
                payload = {
                    "kind": "chunk",
                    "doc_id": doc_id,
                    "chunk_index": i,
                    "text": self.text(),
                    "title": f"문서 {doc_no}",
                    "heading": "",
                    "path": path,
                    "source_type": "txt",
                    "doc_hash": doc_hash,
                    "mtime": 1_700_000_000.0,
                    "meta": {},
                }
                pid = str(uuid.UUID(int=doc_no * CHUNKS_PER_DOC + i + 1))
                points.append(_point(pid, vecs[d * CHUNKS_PER_DOC + i], sv, payload))
            out.append(
                DocumentWrite(doc_id, doc_hash, path, points, lex_len=sum(len(p.sparse) for p in points))
            )
        return out


def _point(pid: str, vec: np.ndarray, sv: SparseVec, payload: dict):
    from kret.engine.types import StoredPoint

    return StoredPoint(pid, vec.tolist(), sv, payload)


def build(args: argparse.Namespace) -> None:
    if args.dir.exists():
        shutil.rmtree(args.dir)
    args.dir.mkdir(parents=True)
    t0 = time.perf_counter()
    synth = Synth()
    setup_s = time.perf_counter() - t0
    store = EdgeStore(args.dir / "shard", "scale", create=True, optimize_every=args.optimize_every or None)
    store.create(DIM, {"kret": "store_scale", "chunks": args.chunks})
    n_docs = args.chunks // CHUNKS_PER_DOC
    t_write = time.perf_counter()
    gen_s = 0.0
    done = 0
    while done < n_docs:
        n = min(args.batch_docs, n_docs - done)
        g = time.perf_counter()
        writes = synth.documents(done, n)
        gen_s += time.perf_counter() - g
        store.write_documents(writes)
        done += n
        if done % (args.batch_docs * 100) == 0 or done == n_docs:
            el = time.perf_counter() - t_write
            print(
                json.dumps(
                    {
                        "written_chunks": done * CHUNKS_PER_DOC,
                        "s": round(el, 1),
                        **rss_parts(),
                    }
                ),
                flush=True,
            )
    write_s = time.perf_counter() - t_write
    t_fin = time.perf_counter()
    store.finalize()
    finalize_s = time.perf_counter() - t_fin
    store.close()
    report = {
        "step": "build",
        "chunks": n_docs * CHUNKS_PER_DOC,
        "optimize_every": args.optimize_every,
        "documents": n_docs,
        "write_s": round(write_s, 1),
        "of_which_synthesis_s": round(gen_s, 1),
        "store_write_chunks_per_s": round(n_docs * CHUNKS_PER_DOC / max(write_s - gen_s, 1e-9)),
        "finalize_s": round(finalize_s, 1),
        "build_s_excl_synthesis": round(write_s - gen_s + finalize_s, 1),
        "setup_s": round(setup_s, 1),
        "disk_gb": round(disk_bytes(args.dir) / 1e9, 2),
        "peak_rss_gb": round(rss_peak(), 2),
        "rss_at_end": rss_parts(),
        "cpus": os.cpu_count(),
        "load_avg": os.getloadavg()[0],
    }
    print(json.dumps(report), flush=True)
    (args.dir / "build.json").write_text(json.dumps(report) + "\n")


def search(args: argparse.Namespace) -> None:
    synth = Synth(seed=SEED + 1)  # queries from other draws of the same distributions
    base_rss = rss_now()
    t0 = time.perf_counter()
    store = EdgeStore(args.dir / "shard", "scale")
    open_s = time.perf_counter() - t0
    live = [Condition("kind", "chunk")]
    hnsw_ef = args.hnsw_ef or None  # 0: Qdrant's own width (the index's ef_construct, 100)
    report: dict = {"step": "search", "open_s": round(open_s, 2), "rss_before_open_gb": round(base_rss, 2)}
    report["hnsw_ef"] = hnsw_ef
    report["chunks"] = store.count_chunks()
    qvecs, _ = synth.dense(args.queries + 20 + 50, noise=0.05)
    qsparse = [synth.sparse(int(synth.rng.integers(2, 7))) for _ in range(args.queries + 20)]
    for q in qsparse:
        q.values[:] = [1.0] * len(q.values)
    for mode in ("dense", "sparse", "hybrid"):
        times = []
        for i in range(args.queries + 20):
            spec = QuerySpec(
                mode=mode,
                limit=10,
                dense=qvecs[i].tolist() if mode != "sparse" else None,
                sparse=qsparse[i] if mode != "dense" else None,
                prefetch_k=100,
                fusion="dbsf",
                conditions=live,
                hnsw_ef=hnsw_ef,
            )
            t = time.perf_counter()
            hits = store.query(spec)
            if i >= 20:
                times.append(time.perf_counter() - t)
            assert len(hits) == 10, (mode, len(hits))
        ms = np.array(times) * 1000
        report[mode] = {
            "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p95_ms": round(float(np.percentile(ms, 95)), 2),
        }
        report[mode]["rss_after_gb"] = round(rss_now(), 2)
    recalls = []
    exact_ms = []
    for v in qvecs[-50:]:
        spec = QuerySpec(
            mode="dense", limit=10, dense=v.tolist(), conditions=live, with_payload=False, hnsw_ef=hnsw_ef
        )
        approx = {h.id for h in store.query(spec)}
        spec.exact = True
        t = time.perf_counter()
        exact = {h.id for h in store.query(spec)}
        exact_ms.append((time.perf_counter() - t) * 1000)
        recalls.append(len(approx & exact) / 10)
    report["dense_recall_at_10_vs_exact"] = round(float(np.mean(recalls)), 4)
    report["exact_dense_p50_ms"] = round(float(np.percentile(exact_ms, 50)), 1)
    report["rss_now"] = rss_parts()
    report["peak_rss_gb"] = round(rss_peak(), 2)
    report["load_avg"] = os.getloadavg()[0]
    store.close()
    print(json.dumps(report), flush=True)
    (args.dir / "search.json").write_text(json.dumps(report) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--chunks", type=int, default=1_000_000)
    b.add_argument("--dir", type=Path, required=True)
    b.add_argument("--batch-docs", type=int, default=256)
    b.add_argument(
        "--optimize-every",
        type=int,
        default=0,
        help="also build the index every N points written (0: only at the end, as kret does)",
    )
    s = sub.add_parser("search")
    s.add_argument("--dir", type=Path, required=True)
    s.add_argument("--queries", type=int, default=300)
    s.add_argument(
        "--hnsw-ef",
        type=int,
        default=DEFAULT_HNSW_EF,
        help=f"dense HNSW beam width (default kret's, {DEFAULT_HNSW_EF}; 0 = Qdrant's own, 100)",
    )
    args = ap.parse_args()
    build(args) if args.cmd == "build" else search(args)


if __name__ == "__main__":
    main()
