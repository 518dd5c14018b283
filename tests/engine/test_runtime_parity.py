"""The real default model (multilingual-e5-small) through OpenVINO vs sentence-transformers fp32 on Korean
text: cos >= 0.999 at auto/fp32 and >= 0.99 at int8 (static, calibrated on Korean passages and queries that
are not the ones compared). The IR and the int8 model are cached under the test cache, so only the first run
pays the export (~15-100 s) and quantisation (~1-10 min on a busy 2-core machine)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kret.engine.models import ModelRegistry
from kret.engine.runtimes import load_embedder

pytestmark = pytest.mark.slow

CACHE = Path(__file__).resolve().parents[2] / ".kret" / "test-cache"


def _rows(path: Path, start: int, stop: int) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for i, line in enumerate(fh) if start <= i < stop]


@pytest.fixture(scope="module")
def korean(shared_dir):
    bench = shared_dir / "data" / "bench" / "korquad-dev-hard"
    passages = [f"{r['title']}\n{r['text']}" for r in _rows(bench / "corpus.jsonl", 0, 48)]
    queries = [r["text"] for r in _rows(bench / "queries.jsonl", 0, 48)]
    cal_passages = [f"{r['title']}\n{r['text']}" for r in _rows(bench / "corpus.jsonl", 1000, 1225)]
    cal_queries = [r["text"] for r in _rows(bench / "queries.jsonl", 1000, 1075)]
    return passages, queries, (cal_passages, cal_queries)


@pytest.fixture(scope="module")
def engines(default_model_dir):
    models_dir = default_model_dir.parent
    info = ModelRegistry(models_dir, CACHE / "runtime-cache").resolve(str(default_model_dir))
    common = dict(models_dir=models_dir, cache_dir=CACHE / "runtime-cache", threads=2)
    return info, common


@pytest.fixture(scope="module")
def reference(engines, korean):
    info, common = engines
    passages, queries, _ = korean
    st = load_embedder(info, runtime="torch", precision="fp32", **common)
    return st.encode_passages(passages), st.encode_queries(queries), st.count_tokens(passages)


def _min_cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.min(np.sum(a * b, axis=1)))


@pytest.mark.parametrize("precision", ["auto", "fp32"])
def test_openvino_matches_sentence_transformers(engines, korean, reference, precision):
    info, common = engines
    passages, queries, _ = korean
    ref_p, ref_q, ref_counts = reference
    ov = load_embedder(info, runtime="openvino", precision=precision, **common)
    assert ov.count_tokens(passages) == ref_counts  # same chunking on both runtimes
    assert _min_cos(ov.encode_passages(passages), ref_p) >= 0.999
    assert _min_cos(ov.encode_queries(queries), ref_q) >= 0.999


def test_int8_stays_close_to_fp32(engines, korean, reference):
    from kret.engine.runtimes.int8 import Calibration

    info, common = engines
    passages, queries, (cal_p, cal_q) = korean
    ref_p, ref_q, _ = reference
    cal = Calibration("collection", cal_p, cal_q)
    q8 = load_embedder(info, runtime="openvino", precision="int8", calibration=cal, **common)
    assert q8.serving["calibration"] == {"source": "collection", "sha256": cal.sha256}
    assert _min_cos(q8.encode_passages(passages), ref_p) >= 0.99
    assert _min_cos(q8.encode_queries(queries), ref_q) >= 0.99
