"""What a sentence-transformers folder says about turning token vectors into a sentence vector, read without
importing sentence-transformers: the module stack (modules.json), pooling (1_Pooling/config.json), whether it
normalises, the max length and the prompts.

The OpenVINO runtime runs only the transformer in the compiled graph and does pooling + normalisation here in
numpy, so it must refuse a module stack it does not reproduce exactly (a Dense layer, a custom module) rather
than serve silently different vectors; the error names ``runtime = "torch"`` as the way out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kret.engine.embedder import pick_prompts
from kret.errors import ModelError

TORCH_HINT = 'set runtime = "torch" (KRET_RUNTIME=torch) to serve it with sentence-transformers'
_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_lasttoken": "lasttoken",
    "pooling_mode_weightedmean_tokens": "weightedmean",
}
SUPPORTED_POOLING = ("cls", "mean", "max", "mean_sqrt_len_tokens", "lasttoken")


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from None


@dataclass
class FolderSpec:
    """The serving-relevant facts of one sentence-transformers folder."""

    root: Path
    transformer_dir: Path
    pooling: list[str]
    normalize: bool
    max_seq_length: int
    prompts: dict[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, root: Path, name: str = "") -> FolderSpec:
        root = Path(root)
        label = name or root.name
        modules_file = root / "modules.json"
        if not modules_file.is_file():
            raise ModelError(f"model {label}: no modules.json in {root}; {TORCH_HINT}")
        modules = sorted(_json(modules_file), key=lambda m: m.get("idx", 0))
        transformer_dir: Path | None = None
        pooling: list[str] | None = None
        normalize = False
        for m in modules:
            kind = str(m.get("type", "")).rsplit(".", 1)[-1]
            sub = root / m.get("path", "")
            if kind == "Transformer" and transformer_dir is None:
                transformer_dir = sub
            elif kind == "Pooling" and pooling is None and transformer_dir is not None:
                pooling, include_prompt = _read_pooling(sub / "config.json")
                if not include_prompt:
                    raise ModelError(
                        f"model {label}: pooling without prompt tokens is not served by OpenVINO; {TORCH_HINT}"
                    )
            elif kind == "Normalize" and pooling is not None and not normalize:
                normalize = True
            else:
                raise ModelError(
                    f"model {label}: module {m.get('type')} is not served by OpenVINO; {TORCH_HINT}"
                )
        if transformer_dir is None or pooling is None:
            raise ModelError(f"model {label}: no Transformer + Pooling modules in modules.json; {TORCH_HINT}")
        bad = [p for p in pooling if p not in SUPPORTED_POOLING]
        if bad:
            raise ModelError(
                f"model {label}: pooling {', '.join(bad)} is not served by OpenVINO; {TORCH_HINT}"
            )
        st_cfg = root / "config_sentence_transformers.json"
        prompts = pick_prompts(dict((_json(st_cfg).get("prompts") or {}) if st_cfg.is_file() else {}))
        return cls(
            root=root,
            transformer_dir=transformer_dir,
            pooling=pooling,
            normalize=normalize,
            max_seq_length=_max_seq_length(root, transformer_dir),
            prompts=prompts,
        )

    def pool(self, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Sentence vectors from token vectors [B, L, H] and the attention mask [B, L], as ST pools them."""
        hidden = hidden.astype(np.float32, copy=False)
        m = mask.astype(np.float32)[:, :, None]
        parts = []
        for mode in self.pooling:
            if mode == "cls":
                parts.append(hidden[:, 0])
            elif mode == "max":
                parts.append(np.where(m > 0, hidden, -1e9).max(axis=1))
            elif mode in ("mean", "mean_sqrt_len_tokens"):
                total = (hidden * m).sum(axis=1)
                count = np.clip(m.sum(axis=1), 1e-9, None)
                parts.append(total / (count if mode == "mean" else np.sqrt(count)))
            elif mode == "lasttoken":  # right padding: the last real token sits at length - 1
                last = mask.sum(axis=1).astype(np.int64) - 1
                parts.append(hidden[np.arange(hidden.shape[0]), np.clip(last, 0, None)])
        out = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
        if self.normalize:
            out = out / np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)
        return out.astype(np.float32, copy=False)


def _read_pooling(path: Path) -> tuple[list[str], bool]:
    cfg = _json(path) if path.is_file() else {"pooling_mode": "mean"}
    include_prompt = bool(cfg.get("include_prompt", True))
    if "pooling_mode" in cfg and isinstance(cfg["pooling_mode"], (str, list)):  # ST >= 6 layout
        modes = cfg["pooling_mode"]
        return ([modes] if isinstance(modes, str) else list(modes)), include_prompt
    modes = [mode for key, mode in _POOLING_KEYS.items() if cfg.get(key)]
    return (modes or ["mean"]), include_prompt


def _max_seq_length(root: Path, transformer_dir: Path) -> int:
    """sentence_bert_config.json's max_seq_length, else the tokenizer's, capped by the position table."""
    for cfg_path in (transformer_dir / "sentence_bert_config.json", root / "sentence_bert_config.json"):
        if cfg_path.is_file():
            value = _json(cfg_path).get("max_seq_length")
            if value:
                return int(value)
    limit = 512
    tok_cfg = transformer_dir / "tokenizer_config.json"
    if tok_cfg.is_file():
        value = _json(tok_cfg).get("model_max_length")
        if isinstance(value, int) and value < 1_000_000:
            limit = value
    cfg = transformer_dir / "config.json"
    if cfg.is_file():
        positions = _json(cfg).get("max_position_embeddings")
        if isinstance(positions, int) and positions > 0:
            limit = min(limit, positions)
    return limit
