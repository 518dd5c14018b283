"""The torch runtime: sentence-transformers in fp32, kret's original serving path.

Kept for models OpenVINO cannot convert (``runtime = "torch"``) and used by training, which needs the
torch module itself (``.model``). Importing this module costs seconds (torch + transformers); the OpenVINO
runtime never does.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import numpy as np

from kret.engine.embedder import Embedder, pick_prompts
from kret.engine.models import ModelInfo
from kret.errors import ConfigError, ModelError


class TorchEmbedder(Embedder):
    """A SentenceTransformer on torch; ``precision`` is always fp32 (``auto`` means fp32 here)."""

    runtime = "torch"

    def __init__(
        self,
        info: ModelInfo,
        *,
        device: str | None = None,
        batch_size: int = 32,
        threads: int | None = None,
        precision: str = "fp32",
        torch_threads: int | None = None,
    ) -> None:
        if precision not in ("auto", "fp32"):
            raise ConfigError(
                f"precision {precision!r} is not available with runtime 'torch' (it runs fp32 only); "
                'use runtime = "openvino" for int8'
            )
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" bars on every CLI call are noise
        hf_logging.set_verbosity_error()

        threads = threads or torch_threads
        if threads:
            torch.set_num_threads(threads)
        self.info = info
        self.batch_size = batch_size
        self.precision = "fp32"
        try:
            self.model = SentenceTransformer(info.path, device=device, local_files_only=True)
        except TypeError:
            self.model = SentenceTransformer(info.path, device=device)
        except Exception as exc:
            raise ModelError(f"cannot load model {info.short} from {info.path}: {exc}") from None
        self.model.eval()

    @classmethod
    def load(cls, info: ModelInfo, **kwargs) -> TorchEmbedder:
        return cls(info, **kwargs)

    @cached_property
    def dimension(self) -> int:
        getter = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        dim = getter()
        if not dim:
            dim = int(self.model.encode(["x"], convert_to_numpy=True).shape[1])
        return int(dim)

    @property
    def max_seq_length(self) -> int:
        return int(self.model.max_seq_length or 512)

    @cached_property
    def prompts(self) -> dict[str, str]:
        return pick_prompts(dict(getattr(self.model, "prompts", {}) or {}))

    def _ids(self, text: str, *, special: bool) -> list[int]:
        return list(self.model.tokenizer(text, add_special_tokens=special)["input_ids"])

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        enc = self.model.tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
        return [len(ids) for ids in enc]

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        enc = self.model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        return [tuple(x) for x in enc["offset_mapping"]]

    def _embed(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
