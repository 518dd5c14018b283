"""Training queries and hard-negative mining on a small indexed Korean corpus (tiny random model).

One collection is indexed per module: KorQuAD dev paragraphs as markdown files (several chunks each), plus
``dup.md``, an exact copy of the first chunk of one of them, which the margin guard must keep out of the
negatives of queries whose positive is that chunk.
"""

from __future__ import annotations

import json

import pytest
from korquad_data import BENCH, doc_id_of, korquad, write_corpus
from scratch import isolated_module_env
from shared_data import require

N_DOCS = 20
MAX_QUERIES = 60
DUP_OF = "kq3"


@pytest.fixture(scope="module")
def corpus(tiny_model_dir):
    """(Kret, {paragraph id: doc id}, [(question, doc id)]) for an indexed collection, built once."""
    require(BENCH)
    from kret.api import Kret

    with isolated_module_env("kret-mining-") as base:
        docs, pairs = korquad(N_DOCS)
        paths = write_corpus(base / "docs", docs)
        kr = Kret(home=base / "home", model=str(tiny_model_dir), embed_batch_size=32, chunk_tokens=64)
        kr.index([base / "docs"])
        # the copy: same title (and so heading) and text as the first chunk of DUP_OF -> the same vector
        searcher = kr.open()
        try:
            store = searcher.collection.store
            chunk0 = next(
                p
                for p in store.scroll_chunks()
                if p.payload["doc_id"] == doc_id_of(paths[DUP_OF]) and p.payload["chunk_index"] == 0
            )
        finally:
            searcher.collection.close()
        title = next(d["title"] for d in docs if d["_id"] == DUP_OF)
        paths["dup"] = base / "docs" / "dup.md"
        paths["dup"].write_text(f"# {title}\n\n{chunk0.payload['text']}\n", encoding="utf-8")
        kr.index([base / "docs"])
        ids = {k: doc_id_of(p) for k, p in paths.items()}
        yield kr, ids, [(q, ids[d]) for q, d in pairs], paths


@pytest.fixture(scope="module")
def opened(corpus):
    from kret.trainer.queries import CollectionCatalog

    kr = corpus[0]
    searcher = kr.open()
    yield searcher, CollectionCatalog.from_store(searcher.collection.store)
    searcher.collection.close()


@pytest.fixture(scope="module")
def train_queries(corpus):
    from kret.trainer.queries import TrainQuery

    _, _, pairs, _ = corpus
    return [TrainQuery(q, d, None, "test", f"q{i}") for i, (q, d) in enumerate(pairs)][:MAX_QUERIES]


def _mine(opened, queries, **kw):
    from kret.trainer.mining import mine_negatives

    searcher, catalog = opened
    kw.setdefault("margin", 1.0)  # the tiny random model scores everything ~0.97: no margin by default
    kw.setdefault("rules", ("margin",))  # the scale-free rules have their own tests below
    return mine_negatives(searcher, queries, catalog=catalog, **kw)


def _doc_of(catalog, chunk_id: str) -> str:
    return catalog.chunks[chunk_id].doc_id


# ---------------------------------------------------------------------------------------------------------
# queries
# ---------------------------------------------------------------------------------------------------------


def test_catalog_rebuilds_documents(corpus, opened):
    from kret.trainer.queries import match_key

    _, ids, _, paths = corpus
    _, catalog = opened
    assert len(catalog.by_doc) == N_DOCS + 1
    assert any(len(cs) > 2 for cs in catalog.by_doc.values()), "the fixture needs multi-chunk documents"
    plain = catalog.plain_doc_texts()
    same = sum(
        plain[ids[k]] == match_key(p.read_text(encoding="utf-8").split("\n", 2)[2]) for k, p in paths.items()
    )
    assert same >= len(paths) - 2  # the chunker's hard cuts may double a character (see the report)
    text = catalog.doc_text(ids["kq0"])
    assert text.startswith("# ") and "\n" in text


def test_queries_file_resolves_ids_paths_and_text(corpus, opened, tmp_path):
    from kret.trainer.queries import load_queries_file

    _, ids, _, paths = corpus
    _, catalog = opened
    chunk = catalog.by_doc[ids["kq5"]][1]
    rows = [
        {"query": "문서 아이디로", "doc_id": ids["kq1"]},
        {"query": "경로로", "path": str(paths["kq2"])},
        {"query": "청크 본문으로", "positive": "  " + chunk.text.replace(" ", "  ") + "\n"},
        {"question": "문서 전체로", "passage": paths["kq7"].read_text(encoding="utf-8").split("\n", 2)[2]},
        {"query": "없는 문서", "positive_id": "no/such/doc.md"},
        {"query": "없는 본문", "pos": ["컬렉션에 없는 문장입니다. 전혀 다른 내용입니다."]},
        {"query": "문서 아이디로", "doc_id": ids["kq1"]},  # duplicate
    ]
    qfile = tmp_path / "q.jsonl"
    qfile.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n", encoding="utf-8")
    queries, stats = load_queries_file(qfile, catalog, embedder=None)
    got = {q.query: q for q in queries}
    assert got["문서 아이디로"].positive_doc_id == ids["kq1"]
    assert got["경로로"].positive_doc_id == ids["kq2"]
    assert got["청크 본문으로"].positive_chunk_id == chunk.id
    assert got["문서 전체로"].positive_doc_id in (ids["kq7"],)
    assert stats.counts["rows_read"] == 7
    assert stats.counts["positive_not_found"] == 2
    assert stats.counts["dropped_duplicate"] == 1
    assert stats.counts["kept"] == len(queries) == 4
    assert stats.file_sha256 and len({q.qid for q in queries}) == 4

    # A document id may be given by its tail (file name, or JSONL row id) when exactly one document has it.
    tail = ids["kq3"].rsplit("/", 1)[1]
    tails = tmp_path / "tails.jsonl"
    tails.write_text(
        json.dumps({"query": "꼬리로", "doc_id": tail}, ensure_ascii=False)
        + "\n"
        + json.dumps({"query": "절대 경로로", "doc_id": "/" + ids["kq3"]}, ensure_ascii=False)
        + "\n",
        encoding="utf-8",
    )
    queries, stats = load_queries_file(tails, catalog)
    assert [q.positive_doc_id for q in queries] == [ids["kq3"], ids["kq3"]]
    assert stats.counts["by_doc_id_tail"] == 2

    tsv = tmp_path / "q.tsv"
    tsv.write_text(f"경로 질문\t{paths['kq4']}\n아이디 질문\t{ids['kq6']}\n", encoding="utf-8")
    queries, _ = load_queries_file(tsv, catalog)
    assert [q.positive_doc_id for q in queries] == [ids["kq4"], ids["kq6"]]


def test_queries_file_bad_lines_name_file_and_line(opened, tmp_path):
    from kret.errors import DatasetError
    from kret.trainer.queries import load_queries_file

    _, catalog = opened
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "a", "doc_id": "x"}\n{"query": "b"\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"bad\.jsonl line 2: invalid JSON"):
        load_queries_file(bad, catalog)
    bad.write_text('{"query": "a", "doc_id": "x"}\n{"query": "b"}\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"line 2: no positive"):
        load_queries_file(bad, catalog)
    tsv = tmp_path / "bad.tsv"
    tsv.write_text("a\tb\nonly one column\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"bad\.tsv line 2: expected 2 tab-separated columns"):
        load_queries_file(tsv, catalog)


def test_self_supervised_titles_and_ict(corpus, opened):
    from kret.trainer.queries import self_supervised_queries

    _, ids, _, _ = corpus
    _, catalog = opened
    titles, stats = self_supervised_queries(catalog, "titles")
    by_title: dict[str, set[str]] = {}
    for doc_id, cs in catalog.by_doc.items():
        by_title.setdefault(cs[0].title, set()).add(doc_id)
    unique = {t for t, docs in by_title.items() if len(docs) == 1}
    assert {q.query for q in titles if q.source == "titles"} == unique
    assert all(by_title[q.query] == {q.positive_doc_id} for q in titles if q.source == "titles")
    assert stats.counts["dropped_ambiguous_title"] > 0  # KorQuAD paragraphs of one article share a title

    ict, stats = self_supervised_queries(catalog, "ict", seed=1, max_queries=10)
    again, _ = self_supervised_queries(catalog, "ict", seed=1, max_queries=10)
    other, _ = self_supervised_queries(catalog, "ict", seed=2, max_queries=10)
    assert ict == again and ict != other
    assert 0 < len(ict) <= 10 and stats.counts["kept"] == len(ict)
    for q in ict:
        chunk = catalog.chunks[q.positive_chunk_id]
        assert q.query in " ".join(chunk.text.split())
        assert q.query not in q.positive_text  # the sentence is cut out of its passage


# ---------------------------------------------------------------------------------------------------------
# mining rules
# ---------------------------------------------------------------------------------------------------------


def test_same_document_chunks_are_never_negatives(opened, train_queries):
    _, catalog = opened
    result = _mine(opened, train_queries, range_min=1, range_max=30, n_negatives=4)
    assert result.stats.removed_same_document > 0
    assert result.rows
    for row, meta in zip(result.rows, result.details, strict=True):
        assert set(row) == {"anchor", "positive", "negative_1", "negative_2", "negative_3", "negative_4"}
        for neg in meta["negatives"]:
            assert _doc_of(catalog, neg["chunk_id"]) != meta["positive_doc_id"]
        assert _doc_of(catalog, meta["positive_chunk_id"]) == meta["positive_doc_id"]


def test_rank_range_is_respected(opened, train_queries):
    result = _mine(opened, train_queries, range_min=5, range_max=12, n_negatives=3)
    assert result.stats.removed_range > 0
    ranks = [n["rank"] for meta in result.details for n in meta["negatives"]]
    assert ranks and min(ranks) >= 5 and max(ranks) <= 12
    for meta in result.details:
        r = [n["rank"] for n in meta["negatives"]]
        assert r == sorted(r)


def test_margin_guard_removes_a_duplicate_of_the_positive(corpus, opened):
    from kret.indexer.document import chunk_point_id
    from kret.trainer.queries import TrainQuery

    _, ids, pairs, _ = corpus
    searcher, catalog = opened
    assert len(catalog.by_doc[ids["dup"]]) == 1
    dup_chunk = catalog.by_doc[ids["dup"]][0]
    positive = chunk_point_id(ids[DUP_OF], 0)
    assert catalog.chunks[positive].embed_text == dup_chunk.embed_text
    queries = [
        TrainQuery(q, d, None, "test", f"d{i}", positive_chunk_id=positive)
        for i, (q, d) in enumerate(pairs)
        if d == ids[DUP_OF]
    ]
    assert queries
    # every chunk is a candidate (range 1..200 > chunks), so only the margin can remove the copy
    result = _mine(opened, queries, range_min=1, range_max=200, n_negatives=6, margin=0.9999)
    assert len(result.rows) == len(queries)
    hits = searcher.search_many([q.query for q in queries], _opts(200))
    for meta, hs in zip(result.details, hits, strict=True):
        dup_rank = next(h.rank for h in hs if h.chunk_id == dup_chunk.id)
        chosen = [n["rank"] for n in meta["negatives"]]
        assert dup_chunk.id not in {n["chunk_id"] for n in meta["negatives"]}
        # top-n by rank: had the copy been eligible, it would have been chosen before these
        assert dup_rank < max(chosen)
        for n in meta["negatives"]:
            assert n["score"] <= meta["positive_score"] * 0.9999 + 1e-6
    assert result.stats.removed_margin >= len(queries)


def _opts(k, mode="dense"):
    from kret.engine.search import SearchOptions

    return SearchOptions(k=k, mode=mode, prefetch_k=max(100, k))


def test_consistency_filter_drops_unreachable_positives(opened, train_queries):
    searcher, _ = opened
    k = 3
    hits = searcher.search_many([q.query for q in train_queries], _opts(k, "hybrid"))
    reachable = [
        any(h.doc_id == q.positive_doc_id for h in hs) for q, hs in zip(train_queries, hits, strict=True)
    ]
    assert any(reachable) and not all(reachable)
    result = _mine(
        opened, train_queries, mode="hybrid", range_min=1, range_max=30, n_negatives=2, consistency_top_k=k
    )
    assert result.stats.dropped_consistency == reachable.count(False)
    kept = {meta["qid"] for meta in result.details}
    assert kept <= {q.qid for q, ok in zip(train_queries, reachable, strict=True) if ok}


def test_top_and_sample_selection(opened, train_queries):
    top = _mine(opened, train_queries, range_min=2, range_max=30, n_negatives=3, strategy="top")
    s0 = _mine(opened, train_queries, range_min=2, range_max=30, n_negatives=3, strategy="sample", seed=0)
    s1 = _mine(opened, train_queries, range_min=2, range_max=30, n_negatives=3, strategy="sample", seed=1)
    assert s0.rows != s1.rows
    assert [m["qid"] for m in top.details] == [m["qid"] for m in s0.details]
    for t, s in zip(top.details, s0.details, strict=True):
        tr = [n["rank"] for n in t["negatives"]]
        sr = [n["rank"] for n in s["negatives"]]
        assert len(tr) == len(sr) == 3
        # top takes the first eligible ranks, so a sample of the same eligible set is never ahead of it
        assert all(a <= b for a, b in zip(tr, sr, strict=True))
    assert sum(t != s for t, s in zip(top.details, s0.details, strict=True)) > 0


def test_counts_add_up_and_missing_positives_are_counted(opened, train_queries):
    from kret.trainer.queries import TrainQuery

    queries = [*train_queries, TrainQuery("없는 문서의 질문", "no/such/doc.md", None, "test", "missing")]
    result = _mine(opened, queries, mode="hybrid", range_min=2, range_max=20, n_negatives=4, margin=0.999)
    s = result.stats
    assert s.queries_in == len(queries)
    assert s.dropped_no_positive == 1
    assert s.queries_in == s.dropped_no_positive + s.dropped_consistency + s.queries_short + s.queries_kept
    assert s.candidates_seen == (
        s.removed_same_document
        + s.removed_range
        + s.removed_margin
        + s.not_selected
        + s.kept_negatives
        + s.negatives_of_short_queries
    )
    assert s.kept_negatives == 4 * s.queries_kept == 4 * len(result.rows)
    assert s.candidates_seen == 20 * (len(queries) - 1)  # hybrid returns k hits for every live query


def test_mined_set_is_reproducible(opened, train_queries, tmp_path):
    from kret.trainer.mining import MiningResult

    a = _mine(opened, train_queries, range_min=2, range_max=25, n_negatives=2, strategy="sample", seed=5)
    b = _mine(opened, train_queries, range_min=2, range_max=25, n_negatives=2, strategy="sample", seed=5)
    ha, hb = a.save(tmp_path / "a.jsonl"), b.save(tmp_path / "b.jsonl")
    assert ha == hb and (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    loaded = MiningResult.load(tmp_path / "a.jsonl")
    assert loaded.sha256 == ha and loaded.rows == a.rows and loaded.details == a.details
    assert loaded.stats == a.stats and loaded.params == a.params


def test_bad_parameters_are_user_errors(opened, train_queries):
    from kret.errors import UserInputError

    for kw in (
        {"range_min": 0},
        {"range_min": 10, "range_max": 5},
        {"margin": 0},
        {"n_negatives": 0},
        {"mode": "sparse"},
        {"strategy": "best"},
        {"range_min": 1, "range_max": 2, "n_negatives": 3},
        {"rules": ("no-such-rule",)},
        {"rules": ("rescaled",), "rescaled_max": 0},
    ):
        with pytest.raises(UserInputError):
            _mine(opened, train_queries[:2], **kw)


def test_heldout_dataset_groups_a_query_with_several_positives(opened, tmp_path):
    """One held-out query text = one evaluated query with all its known positives as qrels."""
    from kret.evaluators.beir import load_beir
    from kret.trainer.gate import write_heldout_beir
    from kret.trainer.queries import TrainQuery

    _, catalog = opened
    d1, d2, d3, d4 = catalog.doc_ids[:4]
    held = [
        TrainQuery("같은 질문", d1, None, "file", "q1"),
        TrainQuery("같은  질문", d2, None, "file", "q1~2"),  # same text after normalisation
        TrainQuery("다른 질문", d4, None, "file", "q2"),
    ]
    sibling = TrainQuery("같은 질문", d3, None, "file", "q1~3")  # positive outside the held-out documents
    ds = load_beir(write_heldout_beir(catalog, held, tmp_path / "h", also_relevant=[*held, sibling]))
    assert ds.queries == {"q1": "같은 질문", "q2": "다른 질문"}
    assert ds.qrels == {"q1": {d1: 1, d2: 1, d3: 1}, "q2": {d4: 1}}
    assert ds.n_docs == len(catalog.doc_ids)


# ---------------------------------------------------------------------------------------------------------
# the rule registry: rescaled score, rank guard, consistency; per-rule counts; held-out documents
# ---------------------------------------------------------------------------------------------------------


def test_relative_score_is_scale_free():
    from kret.trainer.mining_rules import relative_score

    # e5-like scale (random 0.75, positive 0.90) and a wide scale (random 0.0, positive 0.60): the same
    # position between "unrelated" and "the positive" gets the same rescaled score
    assert relative_score(0.87, 0.90, 0.75) == pytest.approx(0.8)
    assert relative_score(0.48, 0.60, 0.0) == pytest.approx(0.8)
    # the raw 0.95 margin calls the e5 candidate suspect (0.87 > 0.855) although it sits at 0.8 of the scale
    assert 0.87 > 0.95 * 0.90
    assert relative_score(0.5, 0.7, 0.7) == float("inf")  # no scale: nothing can be trusted


def test_rank_guard_and_consistency_rules_unit():
    from kret.trainer.mining import MiningParams
    from kret.trainer.mining_rules import Candidate, QueryContext, build_rules

    guard, cons = build_rules(("rank_guard", "consistency"), MiningParams(consistency_top_k=2))
    ctx = QueryContext(
        "q",
        "P",
        0.9,
        dense_rank={"A": 1, "P": 2, "B": 3},
        sparse_rank={"A": 1, "B": 2, "P": 3},
        served_doc_ranks={"A": 1, "P": 2},
    )
    assert not guard.keep(ctx, Candidate(1, "a", "A", 0.9))  # above the positive in both lists: suspect
    assert guard.keep(ctx, Candidate(3, "b", "B", 0.8))  # above it in BM25 only: a hard negative
    assert guard.keep(ctx, Candidate(9, "c", "C", 0.8))  # in neither list
    assert not cons.drop_query(ctx)  # positive at rank 2 <= 2
    assert cons.drop_query(QueryContext("q", "P", 0.9, served_doc_ranks={"A": 1, "B": 2, "P": 3}))
    with pytest.raises(Exception, match="unknown mining rule"):
        build_rules(("nope",), MiningParams())


def test_registry_rules_count_per_rule_and_add_up(opened, train_queries):
    result = _mine(
        opened,
        train_queries,
        mode="hybrid",
        range_min=1,
        range_max=20,
        n_negatives=2,
        rules=("rank_guard", "rescaled", "consistency"),
        consistency_top_k=10,
        rescaled_max=0.9,
    )
    s = result.stats
    assert set(s.removed_by_rule) == {"rank_guard", "rescaled"} and set(s.dropped_by_rule) == {"consistency"}
    assert s.removed_by_rule["rank_guard"] > 0 and s.removed_by_rule["rescaled"] > 0
    s.check()  # the two identities, with every rule's count
    d = s.as_dict()
    assert d["removed_rule_rank_guard"] == s.removed_by_rule["rank_guard"]
    for meta in result.details:
        assert "random_score" in meta
        for n in meta["negatives"]:  # every kept negative is within the rescaled bound
            rel = (n["score"] - meta["random_score"]) / (meta["positive_score"] - meta["random_score"])
            assert rel <= 0.9 + 1e-4


def test_rank_guard_removes_what_both_branches_put_above_the_positive(opened, train_queries):
    from kret.trainer.queries import TrainQuery

    searcher, catalog = opened
    # mislabelled queries: each one's labelled positive is another document, so its true paragraph is an
    # unlabelled positive that BM25 (and often the dense model) puts above the label: what the guard is for
    docs = catalog.doc_ids
    queries = [
        TrainQuery(q.query, docs[(docs.index(q.positive_doc_id) + 1) % len(docs)], None, "test", q.qid)
        for q in train_queries[:30]
    ]
    result = _mine(opened, queries, range_min=1, range_max=20, n_negatives=1, rules=("rank_guard",))
    dense = searcher.search_many([q.query for q in queries], _opts(20, "dense"))
    sparse = searcher.search_many([q.query for q in queries], _opts(20, "sparse"))
    by_qid = {q.qid: (q, d, sp) for q, d, sp in zip(queries, dense, sparse, strict=True)}
    suspects = 0
    for meta in result.details:
        q, d, sp = by_qid[meta["qid"]]
        rank = lambda hs, doc: next((h.rank for h in hs if h.doc_id == doc), 10**9)  # noqa: E731
        for n in meta["negatives"]:
            doc = _doc_of(opened[1], n["chunk_id"])
            both_above = rank(d, doc) < rank(d, q.positive_doc_id) and rank(sp, doc) < rank(
                sp, q.positive_doc_id
            )
            assert not both_above
    for q, d, sp in by_qid.values():
        pos_d = next((h.rank for h in d if h.doc_id == q.positive_doc_id), 10**9)
        pos_s = next((h.rank for h in sp if h.doc_id == q.positive_doc_id), 10**9)
        sp_above = {h.doc_id for h in sp if h.rank < pos_s}
        suspects += len({h.doc_id for h in d if h.rank < pos_d and h.doc_id in sp_above})
    assert suspects > 0 and result.stats.removed_by_rule["rank_guard"] > 0


def test_excluded_documents_are_never_negatives(opened, train_queries):
    _, catalog = opened
    excluded = set(catalog.doc_ids[::3])
    result = _mine(opened, train_queries, range_min=1, range_max=30, n_negatives=2, exclude_docs=excluded)
    assert result.stats.removed_heldout > 0
    for meta in result.details:
        assert not {_doc_of(catalog, n["chunk_id"]) for n in meta["negatives"]} & excluded


def test_split_by_title_keeps_articles_together_and_sets_a_dev_slice(corpus, opened, train_queries):
    from kret.errors import UserInputError
    from kret.trainer.split import split_queries

    _, catalog = opened
    s = split_queries(train_queries, catalog, heldout_fraction=0.3, dev_fraction=0.2, by="title", seed=1)
    assert s == split_queries(
        train_queries, catalog, heldout_fraction=0.3, dev_fraction=0.2, by="title", seed=1
    )
    title = lambda q: catalog.doc_title(q.positive_doc_id)  # noqa: E731
    parts = [{title(q) for q in part} for part in (s.train, s.dev, s.heldout)]
    assert all(parts) and not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
    # every document of a held-out/dev article is excluded from mining, also ones no query points to
    out_titles = parts[1] | parts[2]
    assert s.excluded_docs == {d for d in catalog.doc_ids if catalog.doc_title(d) in out_titles}
    assert s.counts["heldout"] == len(s.heldout) and s.counts["groups_heldout"] >= 1
    by_doc = split_queries(train_queries, catalog, heldout_fraction=0.3, by="doc", seed=1)
    assert not by_doc.dev and not {q.positive_doc_id for q in by_doc.train} & {
        q.positive_doc_id for q in by_doc.heldout
    }
    with pytest.raises(UserInputError, match="metadata key"):
        split_queries(train_queries, catalog, heldout_fraction=0.3, by="no_such_key")


def test_mining_embeds_each_query_once(opened, train_queries):
    """Mining searches the served mode and each branch a rule needs; the queries are embedded once for all."""
    searcher, _ = opened
    embedder = searcher.embedder
    encoded: list[int] = []
    original = embedder.encode_queries

    def counting(texts, *a, **kw):
        encoded.append(len(texts))
        return original(texts, *a, **kw)

    queries = train_queries[:12]
    embedder.encode_queries = counting
    try:
        _mine(opened, queries, range_min=1, range_max=10, n_negatives=1, rules=("rank_guard",), mode="hybrid")
    finally:
        del embedder.encode_queries
    assert sum(encoded) == len(queries)
