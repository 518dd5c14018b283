"""``kret doctor`` on a healthy home and on homes with each problem it knows (tiny model)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from kret import doctor as doc
from kret.api import Kret
from kret.cli.main import cli, register_commands
from kret.engine.default_model import DEFAULT_MODEL_NAME

register_commands()


def _docs(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.txt").write_text(
        "세종대왕이 훈민정음을 만들었다. 한글은 과학적인 문자이다.", encoding="utf-8"
    )
    (folder / "b.txt").write_text("김치는 배추를 소금에 절여 만든다.", encoding="utf-8")
    return folder


def _by(report, area: str, name: str):
    found = [c for c in report.checks if c.area == area and c.name == name]
    assert found, f"no check {area}/{name} in {[(c.area, c.name) for c in report.checks]}"
    return found[0]


@pytest.fixture
def healthy(tiny_kret, fast_tmp):
    tiny_kret.index([_docs(fast_tmp / "docs")], collection="docs")
    return tiny_kret


def test_healthy_home(healthy):
    report = doc.diagnose(healthy.settings)
    assert report.healthy, [c for c in report.problems]
    assert _by(report, "collection docs", "manifest").status == "ok"
    assert _by(report, "collection docs", "model").status == "ok"
    points = _by(report, "collection docs", "points")
    assert points.status == "ok" and points.detail == "2 documents, 2 chunks"
    assert _by(report, "home", "KRET_HOME").status == "ok"
    assert _by(report, "model", DEFAULT_MODEL_NAME).fix == "kret models pull"  # not built yet: a warning
    assert {c.name for c in report.checks if c.area == "extras"} == {"langchain", "train", "plot"}
    assert {"cpu", "openvino", "nncf", "home", "free_bytes"} <= set(report.facts)
    r = CliRunner().invoke(cli, ["doctor", "--json", "--no-verify"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["healthy"] is True
    r = CliRunner().invoke(cli, ["doctor", "--no-verify"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "kret doctor" in r.stdout and "healthy" in r.stdout


def test_problem_exit_code_and_table(healthy, home):
    (home / "models").mkdir(parents=True, exist_ok=True)
    (home / "models" / "DEFAULT").write_text("gone-version\n")
    r = CliRunner().invoke(cli, ["doctor", "--no-verify"], env={"COLUMNS": "200"})
    assert r.exit_code == 1
    assert "gone-version" in r.stdout and f"kret models default {DEFAULT_MODEL_NAME}" in r.stdout
    assert "1 problem(s)" in r.stdout
    r = CliRunner().invoke(cli, ["doctor", "--json", "--no-verify"])
    data = json.loads(r.stdout)
    assert r.exit_code == 1 and data["healthy"] is False and data["problems"] == 1


def test_incomplete_default_model(healthy, home):
    (home / "models" / DEFAULT_MODEL_NAME).mkdir(parents=True)
    check = _by(doc.diagnose(healthy.settings), "model", DEFAULT_MODEL_NAME)
    assert check.status == "problem" and "incomplete" in check.detail
    assert check.fix.endswith("kret models pull") and check.fix.startswith("rm -rf ")


def test_unverified_or_altered_default_model(healthy, home, tiny_model_dir):
    folder = home / "models" / DEFAULT_MODEL_NAME
    folder.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy2(tiny_model_dir / name, folder / name)
    meta = {"name": DEFAULT_MODEL_NAME, "verified_min_cosine": 0.5, "fingerprint": "0" * 64}
    (folder / "kret_model.json").write_text(json.dumps(meta))
    check = _by(doc.diagnose(healthy.settings), "model", DEFAULT_MODEL_NAME)
    assert check.status == "problem"
    assert "not verified" in check.detail and "weights changed" in check.detail
    meta["verified_min_cosine"] = 0.9999
    meta["fingerprint"] = doc_fingerprint = __import__("kret.engine.models", fromlist=["x"]).fingerprint_dir(
        folder
    )
    (folder / "kret_model.json").write_text(json.dumps(meta))
    check = _by(doc.diagnose(healthy.settings), "model", DEFAULT_MODEL_NAME)
    assert check.status == "ok" and doc_fingerprint[:12] in check.detail


@pytest.fixture
def copied_model_collection(home, fast_tmp, tiny_model_dir):
    """A collection built with a copy of the tiny model that the test can then alter or remove."""
    copy = fast_tmp / "model-copy"
    shutil.copytree(tiny_model_dir, copy)
    kr = Kret(home=home, model=str(copy), embed_batch_size=16)
    kr.index([_docs(fast_tmp / "docs2")], collection="other")
    return kr, copy


def test_collection_model_changed(copied_model_collection):
    kr, copy = copied_model_collection
    with (copy / "sentence_bert_config.json").open("a") as fh:
        fh.write(" ")  # any change to a file that decides the vectors changes the fingerprint
    check = _by(doc.diagnose(kr.settings), "collection other", "model")
    assert check.status == "problem" and "the collection was built with" in check.detail
    assert check.fix == f"kret reindex --collection other --model {copy.resolve()}"


def test_collection_model_missing(copied_model_collection):
    kr, copy = copied_model_collection
    shutil.rmtree(copy)
    report = doc.diagnose(kr.settings)
    check = _by(report, "collection other", "model")
    assert check.status == "problem" and "not available" in check.detail
    assert check.fix == "kret reindex --collection other --model default"
    assert _by(report, "model", "configured model").status == "problem"  # KRET_MODEL names it too


def test_chunks_missing_behind_a_document_marker(healthy):
    from kret.engine.collection import open_collection
    from kret.engine.edge_store import _edge
    from kret.engine.store import Condition

    with open_collection(healthy.backend, "docs") as coll:
        doc_id = next(iter(coll.store.doc_states()))
        flt = coll.store._filter([Condition("doc_id", doc_id), Condition("kind", "chunk")])
        coll.store._update(_edge().UpdateOperation.delete_points_by_filter(flt))
    check = _by(doc.diagnose(healthy.settings), "collection docs", "points")
    assert check.status == "problem" and "markers account for 2 chunks" in check.detail
    assert check.fix == "kret collections rm docs --yes && kret index PATH"


def test_old_versions_and_leftover_folders_are_warnings(healthy, home, tiny_model_dir):
    healthy.reindex("docs", model=str(tiny_model_dir))
    (home / "collections" / "half-made").mkdir()
    report = doc.diagnose(healthy.settings)
    versions = _by(report, "collection docs", "versions")
    assert (
        versions.status == "warn"
        and "v0001" in versions.detail
        and versions.fix == "kret gc --collection docs"
    )
    leftover = _by(report, "collections", "half-made")
    assert leftover.status == "warn" and leftover.fix.startswith("rm -rf ")
    assert report.healthy  # warnings do not fail the check


def test_collection_in_use_is_a_warning(healthy):
    searcher = healthy.open("docs")
    try:
        check = _by(doc.diagnose(healthy.settings), "collection docs", "open")
        assert check.status == "warn" and "in use" in check.detail
    finally:
        searcher.collection.close()


def test_home_not_writable(healthy, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(doc.tempfile, "NamedTemporaryFile", refuse)
    check = _by(doc.diagnose(healthy.settings), "home", "KRET_HOME")
    assert check.status == "problem" and "not writable" in check.detail and "KRET_HOME" in check.fix


def test_home_that_does_not_exist_yet_is_fine(tmp_path):
    settings = SimpleNamespace(home=tmp_path / "a" / "b")
    report = doc.DoctorReport()
    doc.check_home(settings, report)
    assert _by(report, "home", "KRET_HOME").status == "ok" and not (tmp_path / "a").exists()


def test_disk_nearly_full(healthy, monkeypatch):
    usage = shutil.disk_usage("/")
    monkeypatch.setattr(doc.shutil, "disk_usage", lambda path: usage._replace(free=200 << 20))
    check = _by(doc.diagnose(healthy.settings), "home", "free space")
    assert check.status == "problem" and "200.0 MiB" in check.detail and "kret gc" in check.fix
    monkeypatch.setattr(doc.shutil, "disk_usage", lambda path: usage._replace(free=3 << 30))
    assert _by(doc.diagnose(healthy.settings), "home", "free space").status == "warn"


def test_missing_extra_names_its_pip_install(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    report = doc.DoctorReport()
    doc.check_extras(SimpleNamespace(), report)
    plot = _by(report, "extras", "plot")
    assert plot.status == "info" and "matplotlib" in plot.detail and plot.fix == "pip install 'kret[plot]'"


def test_cpu_flags_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor : 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni amx_bf16 amx_tile\n")
    features = doc.cpu_features(doc.cpu_flags(info))
    assert features == {"bf16": True, "vnni": True, "amx": True, "avx512": True}
    assert doc.cpu_features(doc.cpu_flags(tmp_path / "missing")) == {
        "bf16": False,
        "vnni": False,
        "amx": False,
        "avx512": False,
    }


_OV_OK = {"importable": True, "version": "2026.4.1", "cpu_capabilities": ["FP32", "INT8"]}


def _runtime(settings, monkeypatch, *, flags=frozenset(), openvino=_OV_OK, nncf=True):
    monkeypatch.setattr(doc, "is_installed", lambda m: nncf if m == "nncf" else True)
    report = doc.DoctorReport()
    doc.check_runtime(settings, report, flags=set(flags), openvino=dict(openvino))
    return report


def test_runtime_before_the_runtime_setting_exists(monkeypatch):
    report = _runtime(SimpleNamespace(), monkeypatch)
    assert _by(report, "runtime", "serving").status == "ok"
    assert "torch fp32" in _by(report, "runtime", "serving").detail
    assert _by(report, "runtime", "CPU bf16").status == "info"


def test_runtime_auto_reports_the_precision_it_gets(monkeypatch):
    settings = SimpleNamespace(runtime="openvino", precision="auto")
    assert "(= fp32 on this CPU)" in _by(_runtime(settings, monkeypatch), "runtime", "serving").detail
    with_bf16 = _runtime(settings, monkeypatch, flags={"avx512_bf16"})
    assert "(= bf16 on this CPU)" in _by(with_bf16, "runtime", "serving").detail
    assert _by(with_bf16, "runtime", "CPU bf16").status == "ok"


@pytest.mark.parametrize(
    ("settings", "kwargs", "fix"),
    [
        (
            SimpleNamespace(runtime="openvino", precision="auto"),
            {"openvino": {"importable": False}},
            "pip install openvino",
        ),
        (SimpleNamespace(runtime="openvino", precision="int8"), {"nncf": False}, "pip install nncf"),
        (SimpleNamespace(runtime="openvino", precision="bf16"), {}, "KRET_PRECISION=auto"),
    ],
)
def test_runtime_problems_name_their_fix(monkeypatch, settings, kwargs, fix):
    report = _runtime(settings, monkeypatch, **kwargs)
    serving = _by(report, "runtime", "serving")
    assert serving.status == "problem" and fix in serving.fix


def test_int8_without_vnni_suggests_auto(monkeypatch):
    """Measured in bench/README.md section 6: on an AVX2-only CPU int8 runs at 0.95x fp32."""
    settings = SimpleNamespace(runtime="openvino", precision="int8")
    serving = _by(_runtime(settings, monkeypatch), "runtime", "serving")
    assert serving.status == "info" and "KRET_PRECISION=auto" in serving.fix
    with_vnni = _by(_runtime(settings, monkeypatch, flags={"avx512_vnni"}), "runtime", "serving")
    assert with_vnni.status == "ok" and not with_vnni.fix


def test_a_check_that_crashes_is_reported_not_raised(healthy, monkeypatch):
    def boom(settings, report):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(doc, "check_home", boom)
    report = doc.diagnose(healthy.settings, verify_weights=False)
    assert any(c.status == "problem" and "disk on fire" in c.detail for c in report.checks)
    assert _by(report, "collection docs", "points").status == "ok"  # the other checks still ran


def test_exit_code_reaches_the_shell(home):
    """`kret doctor` exits 1 through run_cli (click's non-standalone mode returns ctx.exit codes instead of
    exiting; run_cli used to drop them, so a problem exited 0)."""
    import os
    import subprocess
    import sys

    (home / "models").mkdir(parents=True)
    (home / "models" / "DEFAULT").write_text("gone-version\n")
    env = {**os.environ, "KRET_HOME": str(home)}
    r = subprocess.run(
        [sys.executable, "-m", "kret.cli.main", "doctor", "--json", "--no-verify"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert r.returncode == 1, r.stderr
    assert json.loads(r.stdout)["problems"] == 1
