"""The model folder's tokenizer through the ``tokenizers`` library only (no transformers import).

The chunker measures chunks and cuts over-long sentences with it, and the OpenVINO runtime builds its input
tensors with it: the same tokenizer.json sentence-transformers loads, with the special tokens its
post-processor adds, truncated to the model's max length as sentence-transformers truncates.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kret.engine.runtimes.st_folder import TORCH_HINT
from kret.errors import ModelError


class FolderTokenizer:
    """tokenizer.json of a model folder, with padding id and truncation length set from the folder."""

    def __init__(self, folder: Path, max_length: int, label: str = "") -> None:
        from tokenizers import Tokenizer

        path = Path(folder) / "tokenizer.json"
        if not path.is_file():
            raise ModelError(
                f"model {label or folder}: no tokenizer.json for the OpenVINO runtime; {TORCH_HINT}"
            )
        try:
            self.raw = Tokenizer.from_file(str(path))
        except Exception as exc:
            raise ModelError(f"model {label or folder}: cannot read {path}: {exc}; {TORCH_HINT}") from None
        self.raw.no_padding()
        self.raw.no_truncation()
        # encode_batch switches truncation on and off on the shared tokenizer: calls from several threads
        # (one embedder behind a thread pool) must not see each other's switch.
        self._lock = threading.Lock()
        self.max_length = max_length
        self.pad_id = self._pad_id(Path(folder))

    def _pad_id(self, folder: Path) -> int:
        pad_token = "<pad>"
        cfg = folder / "tokenizer_config.json"
        if cfg.is_file():
            value = json.loads(cfg.read_text(encoding="utf-8")).get("pad_token")
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str):
                pad_token = value
        pad = self.raw.token_to_id(pad_token)
        if pad is None:
            pad = self.raw.token_to_id("[PAD]")
        return int(pad if pad is not None else 0)

    def ids(self, text: str, *, special: bool) -> list[int]:
        with self._lock:
            return self.raw.encode(text, add_special_tokens=special).ids

    def count(self, texts: Sequence[str]) -> list[int]:
        with self._lock:
            encs = self.raw.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encs]

    def offsets(self, text: str) -> list[tuple[int, int]]:
        with self._lock:
            return [tuple(o) for o in self.raw.encode(text, add_special_tokens=False).offsets]

    def encode_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """input_ids and attention_mask [B, L], right-padded to the longest text, truncated to max_length."""
        with self._lock:
            self.raw.enable_truncation(self.max_length)
            try:
                encs = self.raw.encode_batch(list(texts), add_special_tokens=True)
            finally:
                self.raw.no_truncation()
        width = max((len(e.ids) for e in encs), default=1)
        ids = np.full((len(encs), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encs), width), dtype=np.int64)
        for i, e in enumerate(encs):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1
        return ids, mask
