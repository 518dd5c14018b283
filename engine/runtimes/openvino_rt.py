"""The OpenVINO runtime: kret's default serving path, with neither torch nor transformers imported.

Tokenise with the folder's tokenizer.json (``tokenizers``), run the compiled transformer (token vectors out),
pool and normalise in numpy as the folder's sentence-transformers modules say. Texts of a call are sorted by
token length and batched so padding stays small. The compiled model is cached by OpenVINO under
``KRET_HOME/cache/openvino-blobs`` (CACHE_DIR), so a second process loads it in a fraction of the time.

Precision: ``auto`` is OpenVINO's default inference precision for the device (bf16 on CPUs with AVX512-BF16
or AMX, fp32 elsewhere); ``fp32`` forces f32 inference; ``int8`` serves an NNCF-quantised IR (``int8.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from kret.engine.embedder import Embedder
from kret.engine.models import ModelInfo
from kret.engine.runtimes.st_folder import TORCH_HINT, FolderSpec
from kret.engine.runtimes.tokenizer import FolderTokenizer
from kret.errors import ModelError

DEVICE = "CPU"


def _core(cache_dir: Path | None):
    import openvino as ov

    core = ov.Core()
    if cache_dir is not None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            core.set_property({"CACHE_DIR": str(cache_dir)})
        except Exception:  # noqa: BLE001 - a read-only home only costs the cache, never the search
            pass
    return core


class OpenVINOEmbedder(Embedder):
    """A compiled OpenVINO model plus the folder's tokenizer, pooling and prompts."""

    runtime = "openvino"

    def __init__(
        self,
        info: ModelInfo,
        xml: Path,
        *,
        precision: str = "auto",
        batch_size: int = 32,
        threads: int | None = None,
        blob_cache: Path | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.info = info
        self.batch_size = batch_size
        self.precision = precision
        self.spec = FolderSpec.read(Path(info.path), info.name)
        self.tokenizer = FolderTokenizer(self.spec.transformer_dir, self.spec.max_seq_length, info.name)
        self._extra = dict(extra or {})
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if precision == "fp32":
            config["INFERENCE_PRECISION_HINT"] = "f32"
        core = _core(blob_cache)
        try:
            # A path (not a read model) lets OpenVINO serve the compiled blob from CACHE_DIR without parsing.
            self.compiled = core.compile_model(str(xml), DEVICE, config)
        except Exception as exc:
            raise ModelError(f"OpenVINO cannot compile model {info.short} ({exc}); {TORCH_HINT}") from None
        self._output = self.compiled.output(0)
        self._names = {p.get_any_name() for p in self.compiled.inputs}
        self._request = self.compiled.create_infer_request()
        # The request's output tensor is overwritten by the next infer: one call at a time runs it and pools
        # its output, so threads sharing this embedder (a web server, ``asyncio.to_thread``) never read another
        # call's hidden states. One request already uses every inference thread; a second would not be faster.
        self._request_lock = threading.Lock()

    @property
    def serving(self) -> dict[str, Any]:
        out = {
            "runtime": self.runtime,
            "precision": self.precision,
            "inference_precision": self.inference_precision,
        }
        out.update(self._extra)
        return out

    @cached_property
    def inference_precision(self) -> str:
        """What OpenVINO actually runs the non-quantised layers in here (e.g. 'bf16', 'f32')."""
        try:
            value = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        except Exception:  # noqa: BLE001
            return "unknown"
        return str(getattr(value, "to_string", lambda: value)())

    @cached_property
    def dimension(self) -> int:
        return int(self._embed(["x"]).shape[1])

    @property
    def max_seq_length(self) -> int:
        return self.spec.max_seq_length

    @cached_property
    def prompts(self) -> dict[str, str]:
        return dict(self.spec.prompts)

    def _ids(self, text: str, *, special: bool) -> list[int]:
        return self.tokenizer.ids(text, special=special)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.tokenizer.count(texts) if texts else []

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return self.tokenizer.offsets(text)

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feed = {"input_ids": ids, "attention_mask": mask}
        feed = {k: v for k, v in feed.items() if k in self._names} if self._names else feed
        with self._request_lock:
            hidden = self._request.infer(feed)[self._output]
            return self.spec.pool(np.asarray(hidden), mask)

    def _embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        lengths = self.tokenizer.count(texts)
        order = np.argsort(lengths, kind="stable")[::-1]  # longest first: a memory problem shows at once
        out: np.ndarray | None = None
        for start in range(0, len(texts), self.batch_size):
            idx = order[start : start + self.batch_size]
            ids, mask = self.tokenizer.encode_batch([texts[i] for i in idx])
            vecs = self._run(ids, mask)
            if out is None:
                out = np.empty((len(texts), vecs.shape[1]), dtype=np.float32)
            out[idx] = vecs
        assert out is not None
        return out
