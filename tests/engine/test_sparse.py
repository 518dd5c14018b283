"""Kiwi BM25 term vectors: stable ids, tag filtering, tf values, and parity with bm25s through the IDF
formula that Qdrant Edge applies (checked against a real shard too)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from shared_data import BENCH, require

from kret.engine.sparse import CONTENT_TAGS, KiwiBM25Encoder, term_id
from kret.engine.types import SparseVec

KORQUAD = BENCH / "korquad-dev"
K1, B = 1.2, 0.75


@pytest.fixture(scope="module")
def enc() -> KiwiBM25Encoder:
    return KiwiBM25Encoder(k1=K1, b=B)


def qdrant_idf(n_docs: int, df: np.ndarray) -> np.ndarray:
    return np.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))


# --- term ids -------------------------------------------------------------------------------------------


def test_term_id_known_values_and_range() -> None:
    # Pinned: changing the hash silently breaks every stored index.
    assert term_id("서울") == 1174803849
    assert term_id("a") == 1243827285
    for t in ["", "서울", "iphone", "出市", "x" * 1000]:
        assert 0 <= term_id(t) < 2**31


def test_term_id_stable_across_processes() -> None:
    terms = ["서울", "한국", "수도", "iphone", "2023", "出市", "먹"]
    code = (
        "import json, sys\n"
        "from kret.engine.sparse import term_id\n"
        "print(json.dumps([term_id(t) for t in json.loads(sys.argv[1])]))\n"
    )
    # A different hash seed proves we do not depend on Python's salted hash().
    env = {"PYTHONHASHSEED": "12345", "PATH": ""}
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(terms)], capture_output=True, text=True, check=True, env=env
    )
    assert json.loads(out.stdout) == [term_id(t) for t in terms]


# --- terms ----------------------------------------------------------------------------------------------


def test_terms_keep_content_morphemes_drop_particles(enc: KiwiBM25Encoder) -> None:
    terms = enc.terms("서울은 한국의 수도이다")
    assert terms == ["서울", "한국", "수도"]
    for particle in ["은", "의", "이", "다", "이다"]:
        assert particle not in terms


def test_terms_stems_lowercase_foreign_numbers(enc: KiwiBM25Encoder) -> None:
    terms = enc.terms("그는 친구를 도와서 밥을 먹었다. Apple의 iPhone 15는 매우 아름답다")
    # Verb/adjective stems (irregular ones too), lower-cased foreign words, numbers, general adverbs.
    assert terms == ["친구", "돕", "밥", "먹", "apple", "iphone", "15", "매우", "아름답"]


def test_terms_batch_equals_single(enc: KiwiBM25Encoder) -> None:
    texts = ["서울은 한국의 수도이다", "", "에서", "밥을 먹었다 밥을"]
    assert enc.terms_batch(texts) == [enc.terms(t) for t in texts]
    assert enc.terms_batch([]) == []


def test_tag_prefixes_parameter() -> None:
    nouns_only = KiwiBM25Encoder(tag_prefixes=("NN",))
    assert nouns_only.terms("그는 친구를 도와서 밥을 먹었다") == ["친구", "밥"]
    assert CONTENT_TAGS == ("NN", "VV", "VA", "XR", "SL", "SN", "SH", "MAG")


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        KiwiBM25Encoder(k1=-1)
    with pytest.raises(ValueError):
        KiwiBM25Encoder(b=1.5)
    with pytest.raises(ValueError):
        KiwiBM25Encoder(tag_prefixes=())


# --- vectors --------------------------------------------------------------------------------------------


def test_encode_documents_hand_computed(enc: KiwiBM25Encoder) -> None:
    # dl = 3, avgdl = 2: norm = 1.2 * (0.25 + 0.75 * 1.5) = 1.65
    [vec] = enc.encode_documents([["밥", "먹", "밥"]], avgdl=2.0)
    got = dict(zip(vec.indices, vec.values, strict=True))
    assert got == pytest.approx({term_id("밥"): 2 / (2 + 1.65), term_id("먹"): 1 / (1 + 1.65)})
    assert vec.indices == sorted(vec.indices)
    # dl == avgdl and b = 0 both reduce the norm to k1.
    [v2] = KiwiBM25Encoder(k1=2.0, b=0.0).encode_documents([["a", "a", "b"]], avgdl=10.0)
    assert dict(zip(v2.indices, v2.values, strict=True)) == pytest.approx(
        {term_id("a"): 0.5, term_id("b"): 1 / 3}
    )


def test_encode_documents_empty_doc(enc: KiwiBM25Encoder) -> None:
    vecs = enc.encode_documents([[], ["서울"]], avgdl=0.5)
    assert vecs[0] == SparseVec([], [])
    assert len(vecs[1]) == 1
    assert enc.encode_documents([[]], avgdl=0.0) == [SparseVec([], [])]
    with pytest.raises(ValueError):
        enc.encode_documents([["서울"]], avgdl=0.0)


def test_encode_query_counts_repeats(enc: KiwiBM25Encoder) -> None:
    vec = enc.encode_query("밥 먹고 또 밥")
    assert dict(zip(vec.indices, vec.values, strict=True)) == {
        term_id("밥"): 2.0,
        term_id("먹"): 1.0,
        term_id("또"): 1.0,
    }


@pytest.mark.parametrize("text", ["", "   \n\t", "에서", "에게서는", "이다", "...!?", "。、「」", "~!()"])
def test_encode_query_empty(enc: KiwiBM25Encoder, text: str) -> None:
    assert enc.encode_query(text) == SparseVec([], [])


def test_bm25s_counts_repeated_query_terms() -> None:
    """bm25s adds a term once per occurrence in the query; encode_query's counts match that."""
    import bm25s

    corpus = [["밥", "먹"], ["밥", "국", "국"], ["물"]]
    r = bm25s.BM25(method="lucene", k1=K1, b=B)
    r.index(corpus, show_progress=False)
    once = r.get_scores(["밥", "국"])
    twice = r.get_scores(["밥", "국", "국"])
    assert twice == pytest.approx(once + r.get_scores(["국"]))


# --- parity with bm25s and with Qdrant Edge ---------------------------------------------------------------


def _load_korquad(n_docs: int) -> tuple[list[str], list[str], dict[str, str], list[tuple[str, str]]]:
    doc_ids, texts = [], []
    with open(KORQUAD / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            doc_ids.append(row["_id"])
            texts.append((row.get("title", "") + " " + row.get("text", "")).strip())
            if len(doc_ids) == n_docs:
                break
    keep = set(doc_ids)
    gold: dict[str, str] = {}
    with open(KORQUAD / "qrels" / "test.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            qid, did, score = line.rstrip("\n").split("\t")
            if did in keep and int(score) > 0:
                gold[qid] = did  # one positive per KorQuAD question
    queries = []
    with open(KORQUAD / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row["_id"] in gold:
                queries.append((row["_id"], row["text"]))
    return doc_ids, texts, gold, queries


class _Index:
    """Brute-force scorer of our vectors under Qdrant's IDF formula."""

    def __init__(self, vecs: list[SparseVec]) -> None:
        cols: dict[int, int] = {}
        rows, cidx, vals = [], [], []
        for r, v in enumerate(vecs):
            for i, x in zip(v.indices, v.values, strict=True):
                rows.append(r)
                cidx.append(cols.setdefault(i, len(cols)))
                vals.append(x)
        self.cols = cols
        self.matrix = np.zeros((len(vecs), len(cols)))
        self.matrix[rows, cidx] = vals
        self.idf = qdrant_idf(sum(1 for v in vecs if len(v)), (self.matrix > 0).sum(axis=0))

    def scores(self, q: SparseVec) -> np.ndarray:
        hit = [(self.cols[i], x) for i, x in zip(q.indices, q.values, strict=True) if i in self.cols]
        if not hit:
            return np.zeros(len(self.matrix))
        cols = [c for c, _ in hit]
        return self.matrix[:, cols] @ (np.array([x for _, x in hit]) * self.idf[cols])


def _ndcg10_single_positive(ranked: list[int], gold: int) -> float:
    return next((1.0 / math.log2(r + 2) for r, d in enumerate(ranked[:10]) if d == gold), 0.0)


@pytest.fixture(scope="module")
def korquad300(enc: KiwiBM25Encoder):
    require(KORQUAD)
    doc_ids, texts, gold, queries = _load_korquad(300)
    doc_terms = enc.terms_batch(texts)
    q_terms = enc.terms_batch([q for _, q in queries])
    avgdl = sum(map(len, doc_terms)) / len(doc_terms)
    vecs = enc.encode_documents(doc_terms, avgdl)
    return doc_ids, doc_terms, vecs, gold, queries, q_terms


def test_parity_with_bm25s_korquad300(enc: KiwiBM25Encoder, korquad300) -> None:
    import bm25s

    doc_ids, doc_terms, vecs, gold, queries, q_terms = korquad300
    assert all(doc_terms), "parity assumes every doc has terms (bm25s's N counts empty docs, Qdrant's not)"
    assert len(queries) > 1000

    retriever = bm25s.BM25(method="lucene", k1=K1, b=B)
    retriever.index(doc_terms, show_progress=False)
    index = _Index(vecs)
    pos = {d: i for i, d in enumerate(doc_ids)}

    same_top10, same_up_to_ties, ndcg_ours, ndcg_ref, max_rel_err = 0, 0, [], [], 0.0
    for (qid, _), terms in zip(queries, q_terms, strict=True):
        ours = index.scores(enc.encode_query_terms(terms))
        ref = (
            retriever.get_scores(terms)
            if any(t in retriever.vocab_dict for t in terms)
            else np.zeros(len(vecs))
        )
        max_rel_err = max(max_rel_err, float(np.max(np.abs(ours - ref)) / max(1e-9, float(ref.max()))))
        top_ours = [int(i) for i in np.argsort(-ours, kind="stable")[:10]]
        top_ref = [int(i) for i in np.argsort(-ref, kind="stable")[:10]]
        same_top10 += top_ours == top_ref
        # A differing list that only reorders equal bm25s scores is a tie, not a disagreement.
        same_up_to_ties += bool(np.allclose(ref[top_ours], ref[top_ref], rtol=1e-5, atol=1e-9))
        ndcg_ours.append(_ndcg10_single_positive(top_ours, pos[gold[qid]]))
        ndcg_ref.append(_ndcg10_single_positive(top_ref, pos[gold[qid]]))

    # Same formula: scores agree to bm25s's float32 precision...
    assert max_rel_err < 1e-5
    # ...so top-10 lists differ only in the order of tied documents.
    print(f"identical top-10 {same_top10}/{len(queries)}, up to ties {same_up_to_ties}/{len(queries)}")
    assert same_top10 / len(queries) >= 0.95
    assert same_up_to_ties / len(queries) >= 0.995
    assert abs(np.mean(ndcg_ours) - np.mean(ndcg_ref)) <= 0.005
    assert np.mean(ndcg_ref) > 0.9  # sanity: KorQuAD is lexical, BM25 is strong here


def test_qdrant_edge_idf_formula(enc: KiwiBM25Encoder, korquad300, tmp_path: Path) -> None:
    """Qdrant Edge's scores equal Σ qtf·idf·value with idf = ln(1 + (N − n + 0.5)/(n + 0.5)), N = points with
    a non-empty sparse vector; pins the formula this module relies on against library upgrades."""
    from qdrant_edge import (
        Distance,
        EdgeConfig,
        EdgeShard,
        EdgeSparseVectorParams,
        EdgeVectorParams,
        Modifier,
        Point,
        Query,
        QueryRequest,
        SparseVector,
        UpdateOperation,
    )

    _, _, vecs, _, queries, q_terms = korquad300
    vecs = vecs[:120]
    shard = EdgeShard.create(
        str(tmp_path / "shard"),
        EdgeConfig(
            vectors={"dense": EdgeVectorParams(size=2, distance=Distance.Cosine)},
            sparse_vectors={"lex": EdgeSparseVectorParams(modifier=Modifier.Idf)},
        ),
    )
    try:
        points = [
            Point(i, {"dense": [1.0, 0.0], "lex": SparseVector(v.indices, v.values)})
            for i, v in enumerate(vecs)
        ]
        # Points without a sparse vector, or with an empty one, must not count in N.
        points += [Point(1000 + i, {"dense": [0.0, 1.0]}) for i in range(30)]
        points += [Point(2000 + i, {"dense": [0.0, 1.0], "lex": SparseVector([], [])}) for i in range(30)]
        shard.update(UpdateOperation.upsert_points(points))
        index = _Index(vecs)
        checked = 0
        for terms in q_terms[:150]:
            q = enc.encode_query_terms(terms)
            if not len(q):
                continue
            expected = index.scores(q)
            hits = shard.query(
                QueryRequest(
                    limit=len(vecs), query=Query.Nearest(SparseVector(q.indices, q.values), using="lex")
                )
            )
            got = {int(h.id): h.score for h in hits}
            assert set(got) == {i for i in range(len(vecs)) if expected[i] > 0}
            for i, s in got.items():
                assert s == pytest.approx(expected[i], rel=1e-5, abs=1e-6)
            checked += 1
        assert checked > 100
    finally:
        shard.close()
