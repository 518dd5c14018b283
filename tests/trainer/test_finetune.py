"""`kret train finetune --mine-negatives` end to end on a tiny model, and the gate's decision rule."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from korquad_data import doc_id_of, korquad, write_corpus
from scratch import isolated_module_env

N_DOCS = 8


@pytest.fixture(scope="module")
def indexed(tiny_model_dir):
    """A collection 'docs' of KorQuAD paragraphs and a queries file of their questions (positive = path).

    Built once per module in its own KRET_HOME, which the CLI gets with --home.
    """
    from kret.api import Kret

    with isolated_module_env("kret-ft-") as base:
        docs, pairs = korquad(N_DOCS)
        paths = write_corpus(base / "docs", docs)
        Kret(home=base / "home", model=str(tiny_model_dir)).index([base / "docs"], collection="docs")
        qfile = base / "queries.jsonl"
        qfile.write_text(
            "".join(
                json.dumps({"query": q, "path": str(paths[d])}, ensure_ascii=False) + "\n" for q, d in pairs
            ),
            encoding="utf-8",
        )
        yield base / "home", qfile, {k: doc_id_of(p) for k, p in paths.items()}


def _cli(home: Path, *args: str):
    from kret.cli.main import cli, register_commands

    register_commands()

    result = CliRunner().invoke(cli, ["--home", str(home), *args], catch_exceptions=False)
    return result


TRAIN = [
    *("--max-steps", "2", "--batch-size", "4", "--lr", "1e-5", "--margin", "1.0", "--range", "2:30"),
    *("--rules", "margin"),  # the tiny random model has no score scale for the rescaled rule
]


def test_finetune_cli_registers_lineage_and_gate_keeps_default(indexed):
    from kret.api import Kret

    home, qfile, ids = indexed
    result = _cli(
        home,
        "train",
        "finetune",
        "--mine-negatives",
        "-c",
        "docs",
        "--queries",
        str(qfile),
        "--negatives",
        "2",
        "--heldout",
        "0.3",
        "--run-name",
        "run1",
        "--json",
        *TRAIN,
        *("--batch-size", "2"),  # held-out + dev leave ~5 of 8 documents: 4 distinct rows are rare
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    kr = Kret(home=home)
    version = out["model"]["name"]
    assert version.startswith("ft-")
    lin = kr.registry.get(version).lineage
    assert lin["kind"] == "finetune"
    assert lin["collection"]["name"] == "docs"
    assert lin["parent"]["fingerprint"] == out["parent"]["fingerprint"] == lin["base"]["fingerprint"]
    assert lin["queries"]["source"] == str(qfile.resolve())
    assert lin["queries"]["file_sha256"] == hashlib.sha256(qfile.read_bytes()).hexdigest()
    assert len(lin["queries"]["queries_sha256"]) == 64
    assert lin["heldout_ids"] and len(lin["heldout_ids"]) == out["n_heldout"]
    assert lin["mining"]["params"]["n_negatives"] == 2 and lin["mining"]["params"]["range_min"] == 2
    assert lin["mining"]["stats"]["queries_kept"] > 0
    mined = Path(lin["mined_file"])
    assert hashlib.sha256(mined.read_bytes()).hexdigest() == lin["mined_sha256"]
    assert lin["fit_config"]["max_steps"] == 2 and lin["fit_config"]["loss"] == "mnrl"
    assert lin["train_stats"]["steps"] == 2
    assert lin["kret_version"] and "git_commit" in lin
    # the held-out queries were never trained on
    held = {json.loads(x)["query"] for x in (mined.parent / "heldout.jsonl").read_text().splitlines()}
    trained = {json.loads(x)["anchor"] for x in mined.read_text().splitlines()}
    assert held and not held & trained
    # the gate ran on the held-out set and did not promote a 2-step tiny model
    gate = lin["gate"]
    assert gate["promoted"] is False and gate["forced"] is False
    assert gate["results"][0]["role"] == "heldout" and gate["verdicts"]
    assert Path(gate["results"][0]["candidate_report"]).is_file()
    # the default gate compares in both modes, each with its own paired delta, CI and p
    assert [(r["role"], r["mode"]) for r in gate["results"]] == [("heldout", "dense"), ("heldout", "hybrid")]
    assert [e["mode"] for e in lin["evals"]] == ["dense", "hybrid"]
    assert "dense: fail" in gate["reason"] and "hybrid: fail" in gate["reason"]
    # a dev slice of the training documents, never trained on, written as a BEIR folder
    split = lin["queries"]["split"]
    assert split["by"] == "doc" and split["dev"] == len(lin["dev_ids"]) > 0
    dev = {json.loads(x)["query"] for x in (mined.parent / "dev.jsonl").read_text().splitlines()}
    assert dev and not dev & trained and Path(lin["dev_dataset"], "qrels", "test.tsv").is_file()
    # documents of held-out and dev queries are never negatives
    out_docs = {
        json.loads(x)["positive_doc_id"]
        for f in ("heldout.jsonl", "dev.jsonl")
        for x in (mined.parent / f).read_text().splitlines()
    }
    negs = {n["chunk_id"] for x in mined.read_text().splitlines() for n in json.loads(x)["meta"]["negatives"]}
    from kret.trainer.queries import CollectionCatalog

    searcher = kr.open("docs")
    try:
        catalog = CollectionCatalog.from_store(searcher.collection.store)
    finally:
        searcher.collection.close()
    assert negs and out_docs and not {catalog.chunks[c].doc_id for c in negs} & out_docs
    assert lin["mining"]["stats"]["removed_heldout"] > 0
    assert kr.registry.default_version() != version
    assert out["gate"]["next_command"] == f"kret reindex --collection docs --model {version}"


def test_forced_promotion_through_the_issue_spelling(indexed):
    from kret.api import Kret

    home, _, _ = indexed
    result = _cli(
        home,
        "train",
        "--mine-negatives",
        "-c",
        "docs",
        "--self-supervised",
        "ict",
        "--heldout",
        "0",
        "--negatives",
        "1",
        "--force",
        "--run-name",
        "run2",
        "--max-steps",
        "1",
        "--batch-size",
        "4",
        "--margin",
        "1.0",
        "--range",
        "2:30",
        "--rules",
        "margin",
    )
    assert result.exit_code == 0, result.output
    kr = Kret(home=home)
    version = kr.registry.default_version()
    assert version and version.startswith("ft-")
    gate = kr.registry.get(version).lineage["gate"]
    assert gate["promoted"] is True and gate["forced"] is True and "forced" in gate["reason"]
    assert kr.registry.get(version).lineage["queries"]["source"] == "self-supervised:ict"
    assert "kret reindex --collection docs --model " + version in result.output


def test_cli_user_mistakes_are_user_errors(home, tmp_path):
    from kret.errors import UserInputError

    qfile = tmp_path / "q.jsonl"
    qfile.write_text('{"query": "q", "doc_id": "d"}\n', encoding="utf-8")
    for args, msg in (
        (["-c", "docs"], "either --queries FILE or --self-supervised"),
        (["-c", "docs", "--queries", str(qfile), "--range", "9:3"], "--range"),
        (["-c", "docs", "--queries", str(qfile), "--resume"], "--resume needs --run-name"),
        (["-c", "docs", "--queries", str(qfile), "--metric", "ndcg@100"], "k must be one of"),
    ):
        with pytest.raises(UserInputError, match=msg):
            _cli(home, "train", "finetune", "--mine-negatives", *args)


# ---------------------------------------------------------------------------------------------------------
# the decision rule, on synthetic reports
# ---------------------------------------------------------------------------------------------------------


def _report(name: str, values: np.ndarray, model: str):
    from kret.evaluators.report import DatasetInfo, EvalReport, MetricSummary, ReportedModel

    qids = [f"q{i}" for i in range(len(values))]
    mean = float(values.mean())
    return EvalReport(
        dataset=DatasetInfo(
            name=name, path=f"/data/{name}", split="test", hash=f"h-{name}", n_queries=len(qids), n_docs=100
        ),
        model=ReportedModel(name=model, fingerprint=model * 4),
        mode="hybrid",
        ks=[10],
        metrics={"ndcg@10": MetricSummary(mean=mean, ci_low=mean - 0.05, ci_high=mean + 0.05)},
        per_query={"ndcg@10": dict(zip(qids, map(float, values), strict=True))},
    )


def _pair(name: str, shift: float, n: int = 80, seed: int = 0):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.2, 0.6, n)
    noise = rng.normal(0, 0.02, n)
    return _report(name, base, "parent"), _report(name, np.clip(base + shift + noise, 0, 1), "cand")


def test_decide_promotes_only_a_clear_win_without_losses():
    from kret.evaluators.report import compare_reports
    from kret.trainer.gate import decide

    held = compare_reports(*_pair("heldout", +0.15))
    flat = compare_reports(*_pair("korquad", 0.0))
    worse = compare_reports(*_pair("miracl", -0.15))
    ok, why = decide(held, [("korquad", flat)])
    assert ok and "held-out ndcg@10 +0.1" in why
    ok, why = decide(held, [("korquad", flat), ("miracl", worse)])
    assert not ok and "worse on miracl" in why
    ok, why = decide(compare_reports(*_pair("heldout", 0.0)), [])
    assert not ok and "no significant win" in why
    ok, why = decide(held, [("miracl", worse)], force=True)
    assert ok and why.startswith("forced")


def test_gate_records_and_promotes(monkeypatch, home, tiny_model_dir, tmp_path):
    from kret.api import Kret
    from kret.trainer import gate as gate_mod

    kr = Kret(home=home, model=str(tiny_model_dir))
    parent = kr.resolve_model()
    src = home / "cand"  # register() renames into the registry: same filesystem
    shutil.copytree(tiny_model_dir, src)
    (src / "kret_model.json").unlink(missing_ok=True)
    (src / "config_sentence_transformers.json").write_text(
        (src / "config_sentence_transformers.json").read_text().replace("passage: ", "document: ")
    )
    candidate = kr.registry.register(src, base=parent, lineage={"kind": "finetune"}, prefix="ft")
    for name in ("heldout", "korquad", "miracl"):
        (tmp_path / name).mkdir()
    shifts = {"heldout": 0.15, "korquad": 0.0, "miracl": -0.15}

    def fake_evaluate(kr_, dataset, model, split, overrides, progress):  # noqa: ARG001
        a, b = _pair(dataset.name, shifts[dataset.name])
        return b if model == candidate.name else a

    monkeypatch.setattr(gate_mod, "_evaluate", fake_evaluate)
    d = gate_mod.gate(
        kr,
        parent,
        candidate,
        heldout_dataset=tmp_path / "heldout",
        eval_datasets=[tmp_path / "miracl"],
        collection="docs",
        out_dir=tmp_path / "gate1",
    )
    assert not d.promoted and "worse on miracl" in d.reason
    assert kr.registry.default_version() != candidate.name
    assert kr.registry.get(candidate.name).lineage["gate"]["promoted"] is False

    d = gate_mod.gate(
        kr,
        parent,
        candidate,
        heldout_dataset=tmp_path / "heldout",
        eval_datasets=[tmp_path / "korquad"],
        collection="docs",
        out_dir=tmp_path / "gate2",
    )
    assert d.promoted and not d.forced
    assert kr.registry.default_version() == candidate.name
    lin = kr.registry.get(candidate.name).lineage
    assert lin["gate"]["promoted"] is True and len(lin["evals"]) == 4  # two gates, two datasets each
    assert (tmp_path / "gate2" / "gate.json").is_file()
    assert (tmp_path / "gate2" / "heldout-heldout.candidate.json").is_file()
    assert d.next_command == f"kret reindex --collection docs --model {candidate.name}"
