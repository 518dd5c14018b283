"""Serving runtimes with the tiny model: OpenVINO vs torch agreement, the settings and their errors, the
manifest's runtime/precision record and the refusal of another one, export at registration and lazy export
into the cache, and the import boundary (indexing and searching never import torch/transformers)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from kret.engine.models import ModelRegistry, fingerprint_dir
from kret.engine.runtimes import check_combination, load_embedder
from kret.errors import ConfigError, ModelMismatchError

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples" / "ko"
TEXTS = [
    "서울은 대한민국의 수도이다.",
    "  김치는 배추를 소금에 절여 고춧가루와 버무린다.  ",
    "한강은 서울을 가로질러 흐른다. " * 30,  # longer than the tiny model's 128 tokens: truncation
    "x",
]


def _load(info, home: Path, **kw):
    return load_embedder(info, models_dir=home / "models", cache_dir=home / "cache", threads=1, **kw)


@pytest.fixture
def tiny_info(tiny_model_dir, home):
    return ModelRegistry(home / "models", home / "cache").resolve(str(tiny_model_dir))


def test_openvino_matches_torch_on_the_tiny_model(tiny_info, home):
    ov = _load(tiny_info, home, runtime="openvino", precision="fp32")
    pt = _load(tiny_info, home, runtime="torch", precision="fp32")
    assert ov.runtime == "openvino" and pt.runtime == "torch"
    assert (ov.dimension, ov.max_seq_length, ov.prompts) == (pt.dimension, pt.max_seq_length, pt.prompts)
    assert ov.prompt_overhead == pt.prompt_overhead
    assert ov.count_tokens(TEXTS) == pt.count_tokens(TEXTS)
    assert ov.token_offsets(TEXTS[1]) == pt.token_offsets(TEXTS[1])
    for enc in ("encode_queries", "encode_passages"):
        a, b = getattr(ov, enc)(TEXTS), getattr(pt, enc)(TEXTS)
        assert a.shape == b.shape == (len(TEXTS), 32)
        assert float(np.min(np.sum(a * b, axis=1))) >= 0.9999
        assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("runtime", ["openvino", "torch"])
def test_concurrent_encodes_from_threads_equal_sequential_ones(tiny_info, home, runtime):
    """One embedder shared by threads (``asyncio.to_thread(searcher.search, …)``, a web server's workers):
    OpenVINO's infer request and the tokenizer's truncation switch were shared state, so concurrent calls
    got each other's outputs — a broadcasting error, or with equal shapes another query's vector."""
    from concurrent.futures import ThreadPoolExecutor

    emb = _load(tiny_info, home, runtime=runtime, precision="fp32")
    texts = [f"{i}번째 질문: " + "한강은 서울을 가로질러 흐른다. " * (i % 7 + 1) for i in range(48)]
    texts += ["서울 " * 400]  # longer than the model's window: truncation must hold under concurrency too
    expected = {t: emb.encode_queries([t])[0] for t in texts}
    with ThreadPoolExecutor(8) as pool:
        for _ in range(3):
            got = list(pool.map(lambda t: emb.encode_queries([t])[0], texts))
            counts = list(pool.map(lambda t: emb.count_tokens([t])[0], texts))
            for t, vec in zip(texts, got, strict=True):
                assert np.allclose(vec, expected[t], atol=1e-5), t[:20]
            assert counts == emb.count_tokens(texts)


def test_settings_runtime_precision_and_threads_alias():
    from kret.settings import load_settings

    s = load_settings(torch_threads=3)
    assert (s.runtime, s.precision, s.threads) == ("openvino", "auto", 3)
    assert not s.explicit("precision") and load_settings(precision="fp32").explicit("precision")
    assert load_settings(threads=2, torch_threads=3).threads == 2
    with pytest.raises(ConfigError, match="precision"):
        load_settings(precision="int4")
    with pytest.raises(ConfigError, match="runtime"):
        load_settings(runtime="onnx")


def test_unavailable_precision_is_one_clear_line(tiny_info, home, monkeypatch):
    with pytest.raises(ConfigError, match="int8.*not available with runtime 'torch'"):
        check_combination("torch", "int8")
    with pytest.raises(ConfigError, match="unknown precision 'bf8'"):
        check_combination("openvino", "bf8")
    monkeypatch.setitem(sys.modules, "nncf", None)  # as if nncf were not installed
    with pytest.raises(ConfigError, match="precision 'int8' needs nncf") as err:
        _load(tiny_info, home, runtime="openvino", precision="int8")
    assert "\n" not in str(err.value)


def test_manifest_records_serving_and_refuses_another_precision(home, tiny_model_dir, tmp_path):
    from kret.api import Kret

    docs = tmp_path / "docs"
    shutil.copytree(SAMPLES, docs)
    kr = Kret(home=home, model=str(tiny_model_dir))
    kr.index([docs], collection="c")
    built = kr.collection_info("c")["model"]
    assert built["runtime"] == "openvino" and built["precision"] == "auto"
    assert built["fingerprint"] == fingerprint_dir(tiny_model_dir)
    assert built["inference_precision"]  # what OpenVINO ran: f32 or bf16 depending on the CPU
    # The default (no explicit choice) uses the collection's own pair, even if settings say otherwise.
    assert Kret(home=home).search("김치", collection="c", mode="dense")
    assert Kret(home=home, runtime="openvino", precision="auto").search("김치", collection="c")
    with pytest.raises(ModelMismatchError) as err:
        Kret(home=home, precision="fp32").search("김치", collection="c")
    msg = str(err.value)
    assert "precision auto" in msg and "precision fp32" in msg and "\n" not in msg
    with pytest.raises(ModelMismatchError, match="runtime torch"):
        Kret(home=home, runtime="torch").search("김치", collection="c")
    # Adding documents also uses (and checks) the recorded pair.
    with pytest.raises(ModelMismatchError):
        Kret(home=home, precision="fp32").index([docs], collection="c")


def test_collections_from_before_runtimes_are_torch_fp32():
    from kret.engine.collection import check_serving, recorded_serving

    legacy = {"model": {"name": "m", "fingerprint": "f"}}
    assert recorded_serving(legacy) == {"runtime": "torch", "precision": "fp32"}
    check_serving("c", legacy, None, None)
    with pytest.raises(ModelMismatchError):
        check_serving("c", legacy, "openvino", None)


def test_registered_version_is_exported_at_registration(home, tiny_model_dir, tmp_path):
    src = tmp_path / "trained"
    shutil.copytree(tiny_model_dir, src, ignore=shutil.ignore_patterns("openvino"))
    reg = ModelRegistry(home / "models", home / "cache")
    info = reg.register(src, base=None, lineage={"train": {}}, prefix="t")
    ir = Path(info.path) / "openvino"
    meta = json.loads((ir / "export.json").read_text())
    assert meta["fingerprint"] == info.fingerprint and (ir / "model.xml").is_file()
    assert info.lineage["openvino_export"]["ok"] is True
    assert fingerprint_dir(Path(info.path)) == info.fingerprint  # the IR does not change the identity
    before = (ir / "model.bin").stat().st_mtime_ns
    emb = _load(info, home, runtime="openvino", precision="auto")  # served from the version, no re-export
    assert emb.encode_passages(["한강"]).shape == (1, 32)
    assert (ir / "model.bin").stat().st_mtime_ns == before
    assert not (home / "cache" / "openvino").exists()


def test_lazy_export_of_a_user_folder_goes_to_the_cache(home, tiny_model_dir, tmp_path):
    user = tmp_path / "my-model"
    shutil.copytree(tiny_model_dir, user, ignore=shutil.ignore_patterns("openvino"))
    os.chmod(user, 0o555)  # kret must not write into a folder it does not own
    try:
        info = ModelRegistry(home / "models", home / "cache").resolve(str(user))
        emb = _load(info, home, runtime="openvino", precision="auto")
        assert emb.encode_queries(["서울"]).shape == (1, 32)
    finally:
        os.chmod(user, 0o755)
    assert not (user / "openvino").exists()
    assert (home / "cache" / "openvino" / info.fingerprint[:32] / "model.xml").is_file()


def test_openvino_refuses_a_module_stack_it_cannot_reproduce(home, tiny_model_dir, tmp_path):
    from kret.errors import ModelError

    odd = tmp_path / "odd"
    shutil.copytree(tiny_model_dir, odd, ignore=shutil.ignore_patterns("openvino"))
    modules = json.loads((odd / "modules.json").read_text())
    modules.insert(
        2, {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
    )
    (odd / "modules.json").write_text(json.dumps(modules))
    info = ModelRegistry(home / "models", home / "cache").resolve(str(odd))
    with pytest.raises(ModelError, match='Dense is not served by OpenVINO.*runtime = "torch"'):
        _load(info, home, runtime="openvino", precision="auto")


def test_int8_on_the_tiny_model_records_its_calibration(tiny_info, home):
    from kret.engine.runtimes.int8 import samples_calibration

    emb = _load(tiny_info, home, runtime="openvino", precision="int8")
    cal = samples_calibration()
    assert emb.serving["calibration"] == {"source": "samples", "sha256": cal.sha256}
    vecs = emb.encode_passages(TEXTS)
    assert vecs.shape == (len(TEXTS), 32) and np.isfinite(vecs).all()
    again = _load(tiny_info, home, runtime="openvino", precision="int8", calibration_sha=cal.sha256)
    assert np.allclose(again.encode_passages(TEXTS), vecs, atol=1e-6)


_BOUNDARY = """
import sys, json
from kret.api import Kret
kr = Kret(home=sys.argv[1], model=sys.argv[2])
kr.index([sys.argv[3]], collection="b")
hits = kr.search("김치는 어떻게 만드나요?", collection="b", k=3)
assert hits, "no hits"
retriever = kr.as_retriever(collection="b", k=2)
docs = retriever.invoke("한글을 만든 사람")
assert docs, "no documents"
retriever.close()
heavy = sorted(m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules)
print(json.dumps({"heavy": heavy, "hits": len(hits)}))
"""


def test_indexing_and_searching_never_import_torch(home, tiny_model_dir, tmp_path):
    pytest.importorskip("langchain_core")
    docs = tmp_path / "docs"
    shutil.copytree(SAMPLES, docs)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_BOUNDARY), str(home), str(tiny_model_dir), str(docs)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == [], f"serving path imported {result['heavy']}"


def test_openvino_tools_send_no_telemetry():
    """OpenVINO's converter and NNCF report usage from processes forked by a thread pool; a fork while numpy
    ran a BLAS call hung `kret train finetune`'s gate for good (and kret opens no network connection). Once
    kret's runtimes are imported, both tools run their own no-op stubs."""
    import subprocess
    import sys

    code = (
        "import sys, kret.engine.runtimes, openvino\n"
        "from openvino.tools.ovc import convert_impl, telemetry_utils\n"
        "import nncf.telemetry.wrapper as w\n"
        "print(convert_impl.tm.__name__, telemetry_utils.tm.__name__, type(w.telemetry).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [
        "openvino.tools.ovc.telemetry_stub",
        "openvino.tools.ovc.telemetry_stub",
        "MagicMock",
    ]
