"""What the rest of kret needs from a loaded embedding model, independent of the engine that runs it.

Two runtimes implement it (``kret.engine.runtimes``): OpenVINO, the default serving path that needs neither
torch nor transformers, and torch through sentence-transformers, kept for models OpenVINO cannot convert.
Both read prompts from the model folder and nowhere else: e5's ``query: `` / ``passage: `` come from
``prompts`` in config_sentence_transformers.json, so a model without prompts gets none.

Use :func:`kret.engine.runtimes.load_embedder` (or ``Kret.embedder``) to get one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

import numpy as np

from kret.engine.models import ModelInfo

QUERY_PROMPT_NAMES = ("query",)
PASSAGE_PROMPT_NAMES = ("passage", "document", "doc")


def pick_prompts(own: dict[str, str]) -> dict[str, str]:
    """{'query': prefix, 'passage': prefix} from a model's named prompts ('' where it defines none)."""
    query = next((own[n] for n in QUERY_PROMPT_NAMES if n in own), "")
    passage = next((own[n] for n in PASSAGE_PROMPT_NAMES if n in own), "")
    return {"query": query, "passage": passage}


class Embedder:
    """A loaded model plus what the rest of kret needs to know about it.

    Subclasses provide ``dimension``, ``max_seq_length``, ``prompts``, the two tokenizer views and
    ``_embed`` (a list of already-prefixed texts -> L2-normalised float32 rows); the batching, the prompt
    handling and the progress callbacks live here so both runtimes behave the same.
    """

    runtime: str = ""
    info: ModelInfo
    batch_size: int = 32

    # what a collection manifest records about the numeric path that produced its vectors
    @property
    def serving(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "precision": getattr(self, "precision", "fp32")}

    @property
    def dimension(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def max_seq_length(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @cached_property
    def prompts(self) -> dict[str, str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _ids(self, text: str, *, special: bool) -> list[int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def count_tokens(self, texts: Sequence[str]) -> list[int]:  # pragma: no cover - abstract
        """Tokens of each text on its own (no prompt, no specials): the unit chunk sizes are measured in."""
        raise NotImplementedError

    def token_offsets(self, text: str) -> list[tuple[int, int]]:  # pragma: no cover - abstract
        """Character spans of the tokens of ``text`` — lets the chunker cut an over-long sentence exactly."""
        raise NotImplementedError

    def _embed(self, texts: list[str]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    @cached_property
    def prompt_overhead(self) -> int:
        """Tokens a passage loses to the prompt and the special tokens."""
        return len(self._ids(self.prompts["passage"] + "가", special=True)) - len(
            self._ids("가", special=False)
        )

    def _encode(
        self, texts: Sequence[str], prefix: str, progress: Callable[[int], None] | None
    ) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        out = []
        step = max(self.batch_size * 4, 1)
        for start in range(0, len(texts), step):
            part = [prefix + t for t in texts[start : start + step]]
            out.append(np.asarray(self._embed(part), dtype=np.float32))
            if progress:
                progress(len(part))
        return np.concatenate(out, axis=0)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self.prompts["query"], None)

    def encode_passages(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        return self._encode(texts, self.prompts["passage"], progress)
