"""`kret eval` end to end on a tiny BEIR set (30 KorQuAD paragraphs, their questions) with the tiny model:
real indexing and search path, report contents, index reuse, compare, plot, and bad input."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from cli_runner import invoke


@pytest.fixture(scope="module")
def tiny_beir(tmp_path_factory, shared_dir) -> Path:
    src = shared_dir / "data" / "bench" / "korquad-dev"
    out = tmp_path_factory.mktemp("tiny-beir")
    keep = []
    with (
        (src / "corpus.jsonl").open(encoding="utf-8") as fh,
        (out / "corpus.jsonl").open("w", encoding="utf-8") as w,
    ):
        for line in fh:
            keep.append(json.loads(line)["_id"])
            w.write(line)
            if len(keep) == 30:
                break
    rows = [r.split("\t") for r in (src / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    rows = [r for r in rows if r[1] in set(keep)][:60]
    qids = {r[0] for r in rows}
    (out / "qrels").mkdir()
    (out / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join("\t".join(r) + "\n" for r in rows)
    )
    with (
        (src / "queries.jsonl").open(encoding="utf-8") as fh,
        (out / "queries.jsonl").open("w", encoding="utf-8") as w,
    ):
        for line in fh:
            if json.loads(line)["_id"] in qids:
                w.write(line)
    return out


def _kret(*args: str, env: dict[str, str]) -> SimpleNamespace:
    """``kret ARGS`` in this process (the console script's error handling; no interpreter start-up and no
    second Kiwi/model load per call), with the subprocess result's field names."""
    r = invoke(args, env=env)
    return SimpleNamespace(returncode=r.exit_code, stdout=r.stdout, stderr=r.stderr)


def test_eval_end_to_end(tiny_beir, tiny_model_dir, home, tmp_path):
    env = {"KRET_HOME": str(home), "KRET_MODEL": str(tiny_model_dir), "HF_HUB_OFFLINE": "1"}
    sparse_json, dense_json = tmp_path / "sparse.json", tmp_path / "dense.json"
    r = _kret("eval", str(tiny_beir), "--mode", "sparse", "-k", "1,3,10", "--out", str(sparse_json), env=env)
    assert r.returncode == 0, r.stderr
    report = json.loads(sparse_json.read_text())
    assert (
        report["dataset"]["n_queries"] == 60
        and report["dataset"]["n_docs"] == 30
        and report["dataset"]["hash"]
    )
    assert report["model"]["fingerprint"] and report["mode"] == "sparse"
    assert report["aggregation"] == "document score = max over its chunks"
    for name in (
        "ndcg@10",
        "recall@10",
        "precision@3",
        "mrr@10",
        "map@10",
        "hit_rate@1",
        "f1_per_query_mean@3",
        "f1_kure@3",
    ):
        m = report["metrics"][name]
        assert m["ci_low"] <= m["mean"] <= m["ci_high"]
    assert len(report["per_query"]["ndcg@10"]) == 60
    assert report["timings"]["docs_embedded"] == 30 and report["timings"]["query_p50_ms"] > 0
    # lexical search on 30 paragraphs with their own questions is easy: a broken pipeline would not get here
    assert report["metrics"]["ndcg@10"]["mean"] > 0.8

    plot = tmp_path / "curves.png"
    r = _kret(
        "eval",
        str(tiny_beir),
        "--mode",
        "dense",
        "-k",
        "1,3,10",
        "--out",
        str(dense_json),
        "--plot",
        str(plot),
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(dense_json.read_text())["timings"]["docs_embedded"] == 0  # the index was reused
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    r = _kret("eval", "compare", str(dense_json), str(sparse_json), env=env)
    assert r.returncode == 0, r.stderr
    assert "ndcg@10" in r.stdout and ("beats" in r.stdout or "No significant difference" in r.stdout)


def test_eval_bad_input_is_one_line(tiny_model_dir, home, tmp_path):
    env = {"KRET_HOME": str(home), "KRET_MODEL": str(tiny_model_dir)}
    r = _kret("eval", str(tmp_path / "missing"), env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "missing" in r.stderr
    bad = tmp_path / "bad"
    (bad / "qrels").mkdir(parents=True)
    (bad / "corpus.jsonl").write_text('{"_id": "d1", "text": "문서"}\n{not json\n', encoding="utf-8")
    (bad / "queries.jsonl").write_text('{"_id": "q1", "text": "질문"}\n', encoding="utf-8")
    (bad / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n", encoding="utf-8")
    r = _kret("eval", str(bad), env=env)
    assert r.returncode == 2 and "corpus.jsonl line 2" in r.stderr and "Traceback" not in r.stderr


def test_moved_dataset_is_indexed_once(tiny_beir, tiny_kret, tmp_path):
    """Document ids carry the file's location: the eval collection must mirror the corpus, not accumulate."""
    import shutil

    from kret.evaluators.runner import evaluate_dataset

    first = evaluate_dataset(tiny_kret, tiny_beir, mode="sparse", ks=(1, 10))
    moved = shutil.copytree(tiny_beir, tmp_path / "elsewhere" / tiny_beir.name)
    second = evaluate_dataset(tiny_kret, moved, mode="sparse", ks=(1, 10))
    assert second.timings["docs_embedded"] == 30  # new ids, so embedded again ...
    assert second.timings["n_chunks"] == first.timings["n_chunks"]  # ... but the old copy is gone
    assert second.metrics["ndcg@10"].mean == pytest.approx(first.metrics["ndcg@10"].mean)


def test_eval_moves_a_cached_collection_to_todays_lexical_text_rule(tiny_beir, tiny_model_dir, home):
    """An eval collection cached before the lexical text rule changed gets new BM25 vectors (Kiwi only, no
    re-embedding), so a report measures what ``kret index`` builds with the same settings; it names the rule."""
    from kret.api import Kret
    from kret.evaluators.runner import evaluate_dataset

    kr = Kret(home=home, model=str(tiny_model_dir))
    old = evaluate_dataset(
        Kret(home=home, model=str(tiny_model_dir), lexical_text="as-embedded"), tiny_beir, mode="sparse"
    )
    assert old.fusion["lexical_text"] == "as-embedded"
    new = evaluate_dataset(kr, tiny_beir, mode="sparse")
    assert new.fusion["lexical_text"] == "title-always" and new.timings["docs_embedded"] == 0
    name = new.fusion["collection"]
    assert len(kr.backend.versions(name)) == 1  # the superseded version is not kept for an eval collection
