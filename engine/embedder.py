"""Dense embeddings through sentence-transformers, with the model's own query/passage prompts.

Prefixes such as e5's ``query: `` / ``passage: `` come from the model folder (``prompts`` in
config_sentence_transformers.json) and nowhere else, so a model without prompts gets none and a model with
different ones gets its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property

import numpy as np

from kret.engine.models import ModelInfo
from kret.errors import ModelError

QUERY_PROMPT_NAMES = ("query",)
PASSAGE_PROMPT_NAMES = ("passage", "document", "doc")


class Embedder:
    """A loaded model plus what the rest of kret needs to know about it."""

    def __init__(
        self,
        info: ModelInfo,
        *,
        device: str | None = None,
        batch_size: int = 32,
        torch_threads: int | None = None,
    ) -> None:
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" bars on every CLI call are noise
        hf_logging.set_verbosity_error()

        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.info = info
        self.batch_size = batch_size
        try:
            self.model = SentenceTransformer(info.path, device=device, local_files_only=True)
        except TypeError:
            self.model = SentenceTransformer(info.path, device=device)
        except Exception as exc:
            raise ModelError(f"cannot load model {info.short} from {info.path}: {exc}") from None
        self.model.eval()

    @classmethod
    def load(cls, info: ModelInfo, **kwargs) -> Embedder:
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
        """{'query': prefix, 'passage': prefix} as the model defines them ('' where it defines none)."""
        own = dict(getattr(self.model, "prompts", {}) or {})
        query = next((own[n] for n in QUERY_PROMPT_NAMES if n in own), "")
        passage = next((own[n] for n in PASSAGE_PROMPT_NAMES if n in own), "")
        return {"query": query, "passage": passage}

    @cached_property
    def prompt_overhead(self) -> int:
        """Tokens a passage loses to the prompt and the special tokens."""
        tok = self.model.tokenizer
        with_prompt = len(tok(self.prompts["passage"] + "가")["input_ids"])
        bare = len(tok("가", add_special_tokens=False)["input_ids"])
        return with_prompt - bare

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text on its own (no prompt, no specials): the unit chunk sizes are measured in."""
        if not texts:
            return []
        enc = self.model.tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
        return [len(ids) for ids in enc]

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character spans of the tokens of ``text`` — lets the chunker cut an over-long sentence exactly."""
        enc = self.model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        return [tuple(x) for x in enc["offset_mapping"]]

    def _encode(
        self, texts: Sequence[str], prefix: str, progress: Callable[[int], None] | None
    ) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        out = []
        step = max(self.batch_size * 4, 1)
        for start in range(0, len(texts), step):
            part = [prefix + t for t in texts[start : start + step]]
            vecs = self.model.encode(
                part,
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            out.append(np.asarray(vecs, dtype=np.float32))
            if progress:
                progress(len(part))
        return np.concatenate(out, axis=0)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self.prompts["query"], None)

    def encode_passages(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        return self._encode(texts, self.prompts["passage"], progress)
