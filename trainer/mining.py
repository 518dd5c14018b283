"""Hard negatives mined from the engine's own index, behind false-negative guards that fit the model's scale.

Negatives come from the normal search path (``Searcher.search_many``), so the model is trained against the
mistakes it makes *as served* (same chunking, same prompts, same fusion). Fixed rules first, then the chosen
guards from the registry ``kret.trainer.mining_rules`` (one module each, in the order given):

* **held out** (fixed): documents of the held-out and dev groups are never negatives (``exclude_docs``);
* **same document** (fixed): another chunk of the positive's own document is not a negative;
* **range** ``[range_min, range_max]`` (fixed; 1-based ranks of the served list): the very top ranks are
  where unlabelled positives sit, so they are skipped ("skip the very top ranks", NV-Retriever);
* **rules**: ``rescaled`` (the margin on the query's own random→positive scale), ``rank_guard`` (BM25 and
  dense both rank it above the positive), ``margin`` (the raw TopK-PercPos margin), ``consistency`` (KaLM:
  drop queries whose positive is not in the top k).

Every rule counts what it removed (``MiningStats``): a candidate is counted by the first rule that removes
it, so the counts add up.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kret.engine.search import SearchOptions
from kret.errors import DatasetError, UserInputError

from .mining_rules import DEFAULT_RULES, RULES, Candidate, QueryContext, Rule, build_rules
from .queries import ChunkRecord, CollectionCatalog, TrainQuery

__all__ = ["MiningParams", "MiningResult", "MiningStats", "mine_negatives"]

STRATEGIES = ("top", "sample")
MODES = ("dense", "hybrid")
_SEARCH_BATCH = 64


@dataclass
class MiningParams:
    mode: str = "dense"
    range_min: int = 3
    range_max: int = 50
    margin: float = 0.95
    n_negatives: int = 4
    strategy: str = "top"
    consistency_top_k: int | None = None
    seed: int = 0
    rules: tuple[str, ...] = DEFAULT_RULES
    rescaled_max: float = 0.95
    random_sample: int = 64  # random passages whose mean score is a query's "unrelated" level

    def __post_init__(self) -> None:
        self.rules = tuple(self.rules)
        if self.consistency_top_k is not None and "consistency" not in self.rules:
            self.rules = (*self.rules, "consistency")  # --consistency-top-k K asks for the rule

    def validate(self) -> None:
        bad = [r for r in self.rules if r not in RULES]
        if bad:
            raise UserInputError(
                f"unknown mining rule {', '.join(bad)} (choose from {', '.join(sorted(RULES))})"
            )
        if not 0 < self.rescaled_max <= 10:
            raise UserInputError(f"rescaled maximum must be in (0, 10], got {self.rescaled_max}")
        if self.random_sample < 1:
            raise UserInputError("the random sample needs at least 1 passage")
        if self.mode not in MODES:
            raise UserInputError(f"unknown mining mode {self.mode!r} (choose dense or hybrid)")
        if self.strategy not in STRATEGIES:
            raise UserInputError(f"unknown negative selection {self.strategy!r} (choose top or sample)")
        if self.range_min < 1 or self.range_max < self.range_min:
            raise UserInputError(
                f"rank range {self.range_min}:{self.range_max} is invalid: need 1 <= min <= max"
            )
        if self.range_max > 1000:
            raise UserInputError("rank range maximum must be at most 1000")
        if not 0 < self.margin <= 1:
            raise UserInputError(f"margin must be in (0, 1], got {self.margin}")
        if self.n_negatives < 1:
            raise UserInputError("the number of negatives must be at least 1")
        if self.n_negatives > self.range_max - self.range_min + 1:
            raise UserInputError(
                f"{self.n_negatives} negatives cannot come from ranks {self.range_min}..{self.range_max}"
            )
        if self.consistency_top_k is not None and not 1 <= self.consistency_top_k <= 1000:
            raise UserInputError("consistency top-k must be between 1 and 1000")


@dataclass
class MiningStats:
    """Per-stage counts. Two identities hold (tested):

    ``queries_in = dropped_no_positive + sum(dropped_by_rule) + queries_short + queries_kept`` and
    ``candidates_seen = removed_heldout + removed_same_document + removed_range + sum(removed_by_rule)
    + not_selected + kept_negatives + negatives_of_short_queries``.
    """

    queries_in: int = 0
    dropped_no_positive: int = 0
    dropped_by_rule: dict[str, int] = field(default_factory=dict)
    candidates_seen: int = 0
    removed_heldout: int = 0
    removed_same_document: int = 0
    removed_range: int = 0
    removed_by_rule: dict[str, int] = field(default_factory=dict)
    not_selected: int = 0
    kept_negatives: int = 0
    queries_short: int = 0  # fewer than n negatives survived: dropped (every row needs n negatives)
    negatives_of_short_queries: int = 0
    queries_kept: int = 0
    # queries with at least one candidate a rule removed / all of whose in-range candidates the rules removed
    queries_touched_by_rules: int = 0
    queries_emptied_by_rules: int = 0

    @property
    def removed_margin(self) -> int:
        return self.removed_by_rule.get("margin", 0)

    @property
    def dropped_consistency(self) -> int:
        return self.dropped_by_rule.get("consistency", 0)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["removed_margin"] = self.removed_margin  # the names of reports written before the registry
        out["dropped_consistency"] = self.dropped_consistency
        for name, n in self.removed_by_rule.items():
            out[f"removed_rule_{name}"] = n
        for name, n in self.dropped_by_rule.items():
            out[f"dropped_rule_{name}"] = n
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MiningStats:
        names = {f.name for f in dataclasses.fields(cls)}
        stats = cls(**{k: v for k, v in data.items() if k in names})
        if data.get("removed_margin") and "margin" not in stats.removed_by_rule:  # an older mined set
            stats.removed_by_rule["margin"] = int(data["removed_margin"])
        if data.get("dropped_consistency") and "consistency" not in stats.dropped_by_rule:
            stats.dropped_by_rule["consistency"] = int(data["dropped_consistency"])
        return stats

    def check(self) -> None:
        q = (
            self.dropped_no_positive
            + sum(self.dropped_by_rule.values())
            + self.queries_short
            + self.queries_kept
        )
        c = (
            self.removed_heldout
            + self.removed_same_document
            + self.removed_range
            + sum(self.removed_by_rule.values())
            + self.not_selected
            + self.kept_negatives
            + self.negatives_of_short_queries
        )
        assert q == self.queries_in, (q, self.queries_in)
        assert c == self.candidates_seen, (c, self.candidates_seen)


@dataclass
class MiningResult:
    """Training rows (anchor, positive, negative_1..n) plus, per row, where every text came from."""

    rows: list[dict[str, str]]
    stats: MiningStats
    params: MiningParams
    details: list[dict[str, Any]] = field(default_factory=list)
    sha256: str | None = None

    def save(self, path: str | Path) -> str:
        """Write the mined set as JSONL (one row + its provenance per line) and a ``.meta.json`` beside it.

        Returns the file's sha256, recorded in the model lineage: a run can be re-trained from exactly these
        rows. The bytes depend only on the inputs (scores rounded, keys in fixed order), so mining twice with
        the same seed gives the same hash.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("wb") as fh:
            for row, meta in zip(self.rows, self.details or [{}] * len(self.rows), strict=True):
                line = json.dumps({**row, "meta": meta}, ensure_ascii=False).encode("utf-8") + b"\n"
                h.update(line)
                fh.write(line)
        tmp.replace(path)
        self.sha256 = h.hexdigest()
        meta_path = path.with_name(path.name + ".meta.json")
        meta_path.write_text(
            json.dumps(
                {"sha256": self.sha256, "params": asdict(self.params), "stats": self.stats.as_dict()},
                ensure_ascii=False,
                indent=2,
            ),
            encoding="utf-8",
        )
        return self.sha256

    @classmethod
    def load(cls, path: str | Path) -> MiningResult:
        """Read a saved set back; the hash is recomputed from the bytes (a mismatch with the lineage shows)."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DatasetError(f"{path}: cannot read mined set ({exc.strerror or exc})") from None
        rows, details = [], []
        for number, line in enumerate(data.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                raise DatasetError(f"{path} line {number}: invalid JSON") from None
            if not isinstance(obj, dict) or "anchor" not in obj or "positive" not in obj:
                raise DatasetError(f"{path} line {number}: not a mined row (anchor, positive, negative_i)")
            details.append(obj.pop("meta", {}) or {})
            rows.append(obj)
        meta_path = path.with_name(path.name + ".meta.json")
        stats, params = MiningStats(), MiningParams()
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            stats = MiningStats.from_dict(meta.get("stats", {}))
            params = MiningParams(**meta.get("params", {}))
        return cls(rows, stats, params, details, hashlib.sha256(data).hexdigest())


def _doc_ranks(hits: Sequence[Any]) -> dict[str, int]:
    """Document id -> its best (1-based) rank in a hit list; a document's chunks share its best rank."""
    out: dict[str, int] = {}
    for h in hits:
        out.setdefault(h.doc_id, h.rank)
    return out


def _random_levels(catalog: CollectionCatalog, qmat: np.ndarray, sample: int, seed: int) -> np.ndarray:
    """Per query, the mean cosine of a seeded sample of random chunks: the query's "unrelated" score level."""
    ids = sorted(catalog.chunks)
    if not ids or not len(qmat):
        return np.zeros(len(qmat), dtype=np.float32)
    picked = random.Random(f"random-level:{seed}").sample(ids, min(sample, len(ids)))
    vecs = catalog.vectors_for(picked)
    if not vecs:
        return np.zeros(len(qmat), dtype=np.float32)
    mat = np.stack([vecs[i] for i in picked if i in vecs])
    return (qmat @ mat.T).mean(axis=1)


def mine_negatives(
    searcher: Any,
    queries: Sequence[TrainQuery],
    *,
    mode: str = "dense",
    range_min: int = 3,
    range_max: int = 50,
    margin: float = 0.95,
    n_negatives: int = 4,
    strategy: str = "top",
    consistency_top_k: int | None = None,
    seed: int = 0,
    rules: Sequence[str] | None = None,
    rescaled_max: float = 0.95,
    random_sample: int = 64,
    exclude_docs: set[str] | frozenset[str] = frozenset(),
    catalog: CollectionCatalog | None = None,
    options: SearchOptions | None = None,
    progress: Callable[..., None] | None = None,
) -> MiningResult:
    """Mine ``n_negatives`` hard negatives per query from ``searcher``'s collection.

    Scores are *dense* similarities (query embedding . chunk embedding, the cosine the dense branch ranks
    by), also in hybrid mode: a hybrid hit's fused score is rank-based and says nothing about how close a
    candidate is to the positive. The positive's score is the query embedding against the positive passage's:
    the stored chunk vector or, for a passage that is not a stored chunk (inverse cloze), a fresh
    ``encode_passages``. For a document-level positive, the positive passage is the document's chunk with the
    highest score. ``rules`` (default ``DEFAULT_RULES``) are applied in order after the fixed rules; the
    rules' extra evidence (random-passage levels, separate dense and BM25 rankings) is computed only when a
    chosen rule needs it. Documents in ``exclude_docs`` (held-out and dev groups) are never negatives.
    Queries with fewer than ``n_negatives`` surviving candidates are dropped (every row needs the same
    columns) and counted as ``queries_short``. ``strategy="sample"`` draws the n negatives at random among
    the survivors, seeded per query so the result does not depend on the order of the queries.
    """
    params = MiningParams(
        mode,
        range_min,
        range_max,
        margin,
        n_negatives,
        strategy,
        consistency_top_k,
        seed,
        tuple(rules) if rules is not None else DEFAULT_RULES,
        rescaled_max,
        random_sample,
    )
    params.validate()
    chosen_rules = build_rules(params.rules, params)
    needs = set().union(*(r.needs for r in chosen_rules)) if chosen_rules else set()
    catalog = catalog if catalog is not None else CollectionCatalog.from_store(searcher.collection.store)
    stats = MiningStats(queries_in=len(queries))
    for r in chosen_rules:
        (stats.dropped_by_rule if r.scope == "query" else stats.removed_by_rule)[r.name] = 0
    opts, branch_opts = _search_options(options, mode, max(range_max, consistency_top_k or 0), needs)

    live = [q for q in queries if q.positive_doc_id in catalog.by_doc]
    stats.dropped_no_positive = len(queries) - len(live)
    ev = _gather_evidence(searcher, live, catalog, opts, branch_opts, needs, random_sample, seed, progress)

    rows: list[dict[str, str]] = []
    details: list[dict[str, Any]] = []
    for i, q in enumerate(live):
        mined = _mine_query(i, q, ev, params, chosen_rules, needs, catalog, exclude_docs, stats)
        if mined is not None:
            rows.append(mined[0])
            details.append(mined[1])
    stats.check()
    return MiningResult(rows, stats, params, details)


@dataclass
class _Evidence:
    """What every query is judged on, gathered for all queries at once (batched searches, one store pass)."""

    hits: list[list[Any]]  # per query, the served result list
    branch_hits: dict[str, list[list[Any]]]  # per branch a rule needs and the served mode is not, its lists
    qmat: np.ndarray  # the query embeddings, one row per query
    random_levels: np.ndarray | None  # per query, the "unrelated" score level (only when a rule needs it)
    vectors: dict[str, np.ndarray]  # dense vectors of every candidate and every positive document's chunks
    fresh_of: dict[int, np.ndarray]  # query index -> its freshly embedded positive text (inverse cloze)


def _search_options(
    options: SearchOptions | None, mode: str, depth: int, needs: set[str]
) -> tuple[SearchOptions, dict[str, SearchOptions]]:
    """Search deep enough for the rank range and the consistency check, plus any branch list a rule needs."""
    if options is None:
        opts = SearchOptions(k=depth, mode=mode, prefetch_k=max(100, depth))
    else:
        opts = SearchOptions(**{**options.__dict__, "k": depth, "mode": mode})
        opts.prefetch_k = max(opts.prefetch_k, depth)
    branch_opts: dict[str, SearchOptions] = {
        b: SearchOptions(**{**opts.__dict__, "mode": b})
        for b in ("dense", "sparse")
        if b in needs and b != mode
    }
    return opts, branch_opts


def _gather_evidence(
    searcher: Any,
    live: list[TrainQuery],
    catalog: CollectionCatalog,
    opts: SearchOptions,
    branch_opts: dict[str, SearchOptions],
    needs: set[str],
    random_sample: int,
    seed: int,
    progress: Callable[..., None] | None,
) -> _Evidence:
    """Batch the searches and the store reads up front: per-query calls would dominate the mining time."""
    # 1. the served result lists (and the branch lists a rule needs) and the query embeddings
    hits_per_query: list[list[Any]] = []
    branch_hits: dict[str, list[list[Any]]] = {b: [] for b in branch_opts}
    qvecs: list[np.ndarray] = []
    if progress:
        progress(stage="mine", total=len(live))
    for start in range(0, len(live), _SEARCH_BATCH):
        batch = live[start : start + _SEARCH_BATCH]
        texts = [q.query for q in batch]
        vecs = np.asarray(searcher.embedder.encode_queries(texts), dtype=np.float32)  # once per query
        hits_per_query.extend(searcher.search_many(texts, opts, query_vectors=vecs))
        for b, bopts in branch_opts.items():
            branch_hits[b].extend(searcher.search_many(texts, bopts, query_vectors=vecs))
        qvecs.append(vecs)
        if progress:
            progress(stage="mine", advance=len(batch))
    qmat = np.concatenate(qvecs) if qvecs else np.zeros((0, 1), dtype=np.float32)
    random_levels = _random_levels(catalog, qmat, random_sample, seed) if "random" in needs else None

    # 2. dense vectors of every candidate and of every positive document's chunks, in one pass over the store
    wanted: set[str] = set()
    for q, hits in zip(live, hits_per_query, strict=True):
        wanted.update(h.chunk_id for h in hits)
        if q.positive_chunk_id and q.positive_chunk_id in catalog.chunks:
            wanted.add(q.positive_chunk_id)
        else:
            wanted.update(c.id for c in catalog.by_doc[q.positive_doc_id or ""])
    vectors = catalog.vectors_for(wanted)
    fresh = [i for i, q in enumerate(live) if q.positive_text]
    fresh_vecs = (
        np.asarray(
            searcher.embedder.encode_passages([live[i].positive_text for i in fresh]), dtype=np.float32
        )
        if fresh
        else np.zeros((0, 1), dtype=np.float32)
    )
    fresh_of = {i: fresh_vecs[j] for j, i in enumerate(fresh)}
    return _Evidence(hits_per_query, branch_hits, qmat, random_levels, vectors, fresh_of)


def _mine_query(
    i: int,
    q: TrainQuery,
    ev: _Evidence,
    params: MiningParams,
    chosen_rules: list[Rule],
    needs: set[str],
    catalog: CollectionCatalog,
    exclude_docs: set[str] | frozenset[str],
    stats: MiningStats,
) -> tuple[dict[str, str], dict[str, Any]] | None:
    """One query's row and its provenance, or None (counted in ``stats``) when the query cannot make a row."""
    qv = ev.qmat[i]
    hits = ev.hits[i]
    pos_chunk, pos_vec, pos_passage = _positive(q, qv, catalog, ev.vectors, ev.fresh_of.get(i))
    if pos_vec is None:  # a chunk without a dense vector cannot be scored: nothing to guard against
        stats.dropped_no_positive += 1
        return None
    pos_score = float(qv @ pos_vec)
    served = _doc_ranks(hits)
    ctx = QueryContext(
        qid=q.qid,
        positive_doc_id=q.positive_doc_id or "",
        pos_score=pos_score,
        random_score=float(ev.random_levels[i]) if ev.random_levels is not None else None,
        served_doc_ranks=served,
        dense_rank=(_doc_ranks(ev.branch_hits["dense"][i]) if "dense" in ev.branch_hits else served)
        if "dense" in needs
        else None,
        sparse_rank=(_doc_ranks(ev.branch_hits["sparse"][i]) if "sparse" in ev.branch_hits else served)
        if "sparse" in needs
        else None,
    )
    dropping = next((r for r in chosen_rules if r.scope == "query" and r.drop_query(ctx)), None)
    if dropping is not None:
        stats.dropped_by_rule[dropping.name] += 1
        return None
    eligible = _eligible(q, hits, ctx, qv, params, chosen_rules, catalog, ev.vectors, exclude_docs, stats)
    chosen = _choose(q, eligible, params)
    stats.not_selected += len(eligible) - len(chosen)
    if len(chosen) < params.n_negatives:
        stats.queries_short += 1
        stats.negatives_of_short_queries += len(chosen)
        return None
    stats.kept_negatives += len(chosen)
    stats.queries_kept += 1
    row = {"anchor": q.query, "positive": pos_passage}
    for j, (_, _, _, text) in enumerate(chosen, start=1):
        row[f"negative_{j}"] = text
    detail: dict[str, Any] = {
        "qid": q.qid,
        "source": q.source,
        "positive_doc_id": q.positive_doc_id,
        "positive_chunk_id": pos_chunk.id,
        "positive_score": round(pos_score, 6),
        "negatives": [
            {"chunk_id": cid, "rank": rank, "score": round(score, 6)} for rank, cid, score, _ in chosen
        ],
    }
    if ctx.random_score is not None:
        detail["random_score"] = round(ctx.random_score, 6)
    return row, detail


def _positive(
    q: TrainQuery,
    qv: np.ndarray,
    catalog: CollectionCatalog,
    vectors: dict[str, np.ndarray],
    fresh_vec: np.ndarray | None,
) -> tuple[ChunkRecord, np.ndarray | None, str]:
    """What the negatives are measured against: a document-level positive names no single passage."""
    doc_chunks = catalog.by_doc[q.positive_doc_id or ""]
    if q.positive_chunk_id and q.positive_chunk_id in catalog.chunks:
        pos_chunk = catalog.chunks[q.positive_chunk_id]
    else:
        scored = [(float(qv @ vectors[c.id]), c) for c in doc_chunks if c.id in vectors]
        pos_chunk = max(scored, key=lambda t: t[0])[1] if scored else doc_chunks[0]
    if fresh_vec is not None:
        return pos_chunk, fresh_vec, q.positive_text or ""
    return pos_chunk, vectors.get(pos_chunk.id), pos_chunk.embed_text


def _eligible(
    q: TrainQuery,
    hits: list[Any],
    ctx: QueryContext,
    qv: np.ndarray,
    params: MiningParams,
    chosen_rules: list[Rule],
    catalog: CollectionCatalog,
    vectors: dict[str, np.ndarray],
    exclude_docs: set[str] | frozenset[str],
    stats: MiningStats,
) -> list[tuple[int, str, float, str]]:
    """The candidates no rule suspects of being a false negative, each removal counted by the first rule."""
    eligible: list[tuple[int, str, float, str]] = []  # rank, chunk id, dense score, text
    in_range = removed_here = 0
    for h in hits:
        stats.candidates_seen += 1
        if h.doc_id in exclude_docs and h.doc_id != q.positive_doc_id:
            stats.removed_heldout += 1
            continue
        if h.doc_id == q.positive_doc_id:
            stats.removed_same_document += 1
            continue
        if not params.range_min <= h.rank <= params.range_max:
            stats.removed_range += 1
            continue
        in_range += 1
        vec = vectors.get(h.chunk_id)
        dense = float(qv @ vec) if vec is not None else float("nan")
        cand = Candidate(h.rank, h.chunk_id, h.doc_id, dense)
        removing = next(
            (
                r
                for r in chosen_rules
                if r.scope == "candidate" and not (np.isfinite(dense) and r.keep(ctx, cand))
            ),
            None,
        )
        if removing is not None:
            stats.removed_by_rule[removing.name] += 1
            removed_here += 1
            continue
        record = catalog.chunks.get(h.chunk_id)
        text = record.embed_text if record is not None else h.text
        eligible.append((h.rank, h.chunk_id, dense, text))
    if removed_here:
        stats.queries_touched_by_rules += 1
        if removed_here == in_range:
            stats.queries_emptied_by_rules += 1
    return eligible


def _choose(
    q: TrainQuery, eligible: list[tuple[int, str, float, str]], params: MiningParams
) -> list[tuple[int, str, float, str]]:
    """The n negatives of the row; a sample is seeded per query so the query order does not change it."""
    if params.strategy == "top" or len(eligible) <= params.n_negatives:
        return eligible[: params.n_negatives]
    rng = random.Random(f"{params.seed}:{q.qid}:{q.query}")
    picked = sorted(rng.sample(range(len(eligible)), params.n_negatives))
    return [eligible[j] for j in picked]
