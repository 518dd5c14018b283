"""BEIR loading: the shared benchmark's counts, and every malformed-data path on small fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from shared_data import BENCH, missing_reason

from kret.errors import DatasetError
from kret.evaluators.beir import load_beir

MIRACL = BENCH / "miracl-ko-mini"


@pytest.mark.skipif(not MIRACL.is_dir(), reason=missing_reason(MIRACL))
def test_miracl_ko_mini_counts_match_baselines():
    ds = load_beir(MIRACL)
    assert (ds.n_docs, ds.n_queries, ds.n_positive_qrels) == (2000, 213, 547)
    assert ds.name == "miracl-ko-mini" and ds.split == "test"
    assert ds.warnings == []
    assert len(ds.data_hash) == 16
    assert load_beir(MIRACL).data_hash == ds.data_hash
    title, text = ds.corpus["986262#8"]
    assert title == "공민현" and text.startswith("2019년")
    assert set(ds.qrels) == set(ds.queries)


def _write(folder: Path, corpus=None, queries=None, qrels=None, split="test") -> Path:
    """A tiny valid dataset; each part can be replaced by raw text."""
    folder.mkdir(parents=True, exist_ok=True)
    if corpus is None:
        corpus = "\n".join(
            json.dumps({"_id": f"d{i}", "title": f"t{i}", "text": f"문서 {i}"}, ensure_ascii=False)
            for i in range(1, 5)
        )
    if queries is None:
        queries = "\n".join(
            json.dumps({"_id": f"q{i}", "text": f"질문 {i}"}, ensure_ascii=False) for i in range(1, 4)
        )
    if qrels is None:
        qrels = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t1\nq2\td3\t2\n"
    (folder / "corpus.jsonl").write_text(corpus + "\n", encoding="utf-8")
    (folder / "queries.jsonl").write_text(queries + "\n", encoding="utf-8")
    (folder / "qrels").mkdir(exist_ok=True)
    (folder / "qrels" / f"{split}.tsv").write_text(qrels, encoding="utf-8")
    return folder


def test_valid_fixture(tmp_path: Path):
    ds = load_beir(_write(tmp_path / "toy"))
    assert ds.corpus["d1"] == ("t1", "문서 1")
    assert ds.queries == {"q1": "질문 1", "q2": "질문 2"}
    assert ds.qrels == {"q1": {"d1": 1, "d2": 1}, "q2": {"d3": 2}}
    # q3 has no qrels in this split: not evaluated, and said so.
    assert any("1 of 3 queries have no qrels" in w for w in ds.warnings)


def test_qrels_header_is_optional(tmp_path: Path):
    with_header = load_beir(_write(tmp_path / "a"))
    without = load_beir(_write(tmp_path / "b", qrels="q1\td1\t1\nq1\td2\t1\nq2\td3\t2\n"))
    assert with_header.qrels == without.qrels


def test_bad_json_line_names_file_and_line(tmp_path: Path):
    corpus = '{"_id": "d1", "text": "a"}\n{"_id": "d2", "text": "b"}\n{"_id": "d3", "text": "c"'
    with pytest.raises(DatasetError, match=r"corpus\.jsonl line 3: invalid JSON"):
        load_beir(_write(tmp_path / "t", corpus=corpus))


def test_row_without_id_names_line(tmp_path: Path):
    queries = '{"_id": "q1", "text": "a"}\n\n{"text": "no id"}'
    with pytest.raises(DatasetError, match=r"queries\.jsonl line 3: missing or empty _id"):
        load_beir(_write(tmp_path / "t", queries=queries))


def test_duplicate_id_is_an_error(tmp_path: Path):
    corpus = '{"_id": "d1", "text": "a"}\n{"_id": "d1", "text": "b"}'
    with pytest.raises(DatasetError, match=r"corpus\.jsonl line 2: duplicate _id 'd1'"):
        load_beir(_write(tmp_path / "t", corpus=corpus))


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("q1\td1", r"test\.tsv line 3: expected 3 .*got 2"),
        ("q1\td1\thigh", r"test\.tsv line 3: score 'high'"),
    ],
)
def test_bad_qrels_row_names_line(tmp_path: Path, row: str, message: str):
    qrels = f"query-id\tcorpus-id\tscore\nq1\td2\t1\n{row}\n"
    with pytest.raises(DatasetError, match=message):
        load_beir(_write(tmp_path / "t", qrels=qrels))


def test_unknown_documents_and_queries_are_skipped_with_counts(tmp_path: Path):
    qrels = "q1\td1\t1\nq1\tnope\t1\nq2\tnope\t1\nq2\tgone\t1\nq9\td1\t1\nq2\td3\t1\n"
    ds = load_beir(_write(tmp_path / "t", qrels=qrels))
    assert ds.qrels == {"q1": {"d1": 1}, "q2": {"d3": 1}}
    assert any("skipped 3 rows naming 2 documents not in corpus.jsonl" in w for w in ds.warnings)
    assert any("skipped 1 rows naming 1 queries not in queries.jsonl" in w for w in ds.warnings)


def test_queries_without_positive_qrel_are_not_evaluated(tmp_path: Path):
    ds = load_beir(_write(tmp_path / "t", qrels="q1\td1\t1\nq2\td3\t0\n"))
    assert set(ds.queries) == {"q1"}
    assert any("1 judged queries have no qrel with score > 0" in w for w in ds.warnings)


def test_empty_split_is_an_error(tmp_path: Path):
    with pytest.raises(DatasetError, match=r"test\.tsv: split 'test' has no evaluable query"):
        load_beir(_write(tmp_path / "t", qrels="query-id\tcorpus-id\tscore\nq1\td1\t0\n"))
    with pytest.raises(DatasetError, match="no evaluable query"):
        load_beir(_write(tmp_path / "u", qrels=""))


def test_missing_files_are_named(tmp_path: Path):
    with pytest.raises(DatasetError, match="dataset folder not found"):
        load_beir(tmp_path / "absent")
    folder = _write(tmp_path / "t", split="dev")
    with pytest.raises(DatasetError, match=r"qrels/test\.tsv: file not found .*available splits: dev"):
        load_beir(folder)
    (folder / "queries.jsonl").unlink()
    with pytest.raises(DatasetError, match=r"queries\.jsonl: file not found"):
        load_beir(folder, split="dev")


def test_hash_changes_with_content(tmp_path: Path):
    a = load_beir(_write(tmp_path / "a"))
    b = load_beir(_write(tmp_path / "b", qrels="q1\td1\t1\nq1\td2\t1\nq2\td3\t1\n"))
    assert a.data_hash != b.data_hash
    assert load_beir(_write(tmp_path / "c")).data_hash == a.data_hash
    # The index depends on the corpus only: other qrels keep the corpus hash (and the eval collection).
    assert a.corpus_hash == b.corpus_hash and len(a.corpus_hash) == 16
    from kret.evaluators.runner import eval_collection_name

    assert eval_collection_name(a, "f" * 64, None) == f"eval-a-{a.corpus_hash[:8]}-ffffffff-cauto"
