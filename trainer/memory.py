"""How many texts one forward/backward pass may hold, so that a default training run fits a laptop.

Training memory has two parts. The fixed part is the weights, their gradients and Adam's two moments
(4 × 4 bytes per parameter in fp32; multilingual-e5-small's 118 M parameters, most of them the 250k-token
embedding table, are already 1.9 GB), plus the frozen guide of the GIST loss and the runtime itself. The part
that grows is the activations kept for the backward pass: per text, per layer, a few hidden-size and
intermediate-size vectors per token and the attention maps (heads × length²). Without a cache that is
``batch × texts per row`` sequences at once: batch 32 × (query, positive, 2 negatives) at 256 tokens peaked
at 22.7 GB (issue 16). The cached (GradCache) loss embeds the whole batch without gradients, then back-props
one mini-batch at a time, so only one mini-batch of activations is alive; the loss and its negatives are
the same as without the cache.

``mini_batch_for`` sizes that mini-batch from the model's shape, the training sequence length and a memory
budget. The constants are an estimate calibrated on measured peaks (bench/README.md, "Trainer memory"), not a
guarantee: the budget is a target, ``--mini-batch-size`` overrides it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_MEMORY_GB",
    "ModelShape",
    "activation_bytes_per_text",
    "mini_batch_for",
    "model_shape",
    "resident_bytes",
]

DEFAULT_MEMORY_GB = 6.0
GB = 10**9  # budgets are decimal gigabytes (the "6 GB"; /usr/bin/time prints KiB: x 1.024)
# Python, torch, tokenizers and the dataset (1.25-1.3 GB RSS measured before the first step, kret train
# pretrain, e5-small) plus what a step allocates beyond its activations (AdamW's multi-tensor temporaries,
# allocator slack, ~0.3 GB). Fitted with the scale below on two fine-tuning peaks at 256 tokens: mini-batch 4
# -> 4.87 GB, mini-batch 9 -> 6.51 GB (bench/README.md §2f, "Trainer memory").
RUNTIME_OVERHEAD_GB = 1.6
# What a bare training process holds besides the weights when the mini-batch is sized (interpreter, torch,
# tokenizer, dataset): pretraining measured 0.96 GB resident with e5-small's 0.47 GB of weights loaded.
BARE_PROCESS_GB = 0.5
# The layer-by-layer count below undercounts what torch really keeps: fine-tuning peaks grew by ~0.28 GB per
# text of the mini-batch at 256 tokens against the 0.217 GB it predicts, so it is scaled up by this factor.
_MEASURED_SCALE = 1.3
# Saved activations per token per layer, in floats: ~10 hidden-size tensors (LayerNorms, residuals, the Q/K/V
# and output projections, dropout masks), ~3 intermediate-size (FFN input, GELU, dropout) and ~3 attention
# maps per head (scores, softmax, dropout) per key position.
_HIDDEN_FACTOR = 10
_INTERMEDIATE_FACTOR = 3
_ATTENTION_FACTOR = 3


@dataclass(frozen=True)
class ModelShape:
    parameters: int
    layers: int
    hidden: int
    intermediate: int
    heads: int


def model_shape(model: Any) -> ModelShape:
    """The transformer's shape read from a SentenceTransformer (BERT/XLM-R-like config); safe defaults else."""
    params = sum(p.numel() for p in model.parameters())
    cfg = None
    try:
        cfg = model[0].auto_model.config
    except (AttributeError, IndexError, KeyError, TypeError):
        cfg = None
    hidden = int(getattr(cfg, "hidden_size", 384) or 384)
    return ModelShape(
        parameters=int(params),
        layers=int(getattr(cfg, "num_hidden_layers", 12) or 12),
        hidden=hidden,
        intermediate=int(getattr(cfg, "intermediate_size", 4 * hidden) or 4 * hidden),
        heads=int(getattr(cfg, "num_attention_heads", 12) or 12),
    )


def activation_bytes_per_text(shape: ModelShape, seq_len: int, bytes_per_float: int = 4) -> int:
    """Activations one text of ``seq_len`` tokens keeps for the backward pass (an estimate)."""
    per_token_layer = (
        _HIDDEN_FACTOR * shape.hidden
        + _INTERMEDIATE_FACTOR * shape.intermediate
        + _ATTENTION_FACTOR * shape.heads * seq_len
    )
    return int(shape.layers * seq_len * per_token_layer * bytes_per_float * _MEASURED_SCALE)


def fixed_bytes(shape: ModelShape, *, guide: bool = False, resident: int | None = None) -> int:
    """Weights + gradients + Adam moments (fp32), plus a frozen copy for a guided loss, plus the runtime.

    ``resident`` is the process's RSS now, with the model to train already loaded. What it holds beyond a
    bare training process (the model's weights and ``BARE_PROCESS_GB`` of interpreter, torch and tokenizer)
    is charged on top of the estimate: a process that mined negatives first (serving model, Kiwi, the
    collection's catalog) keeps more than a bare one — the allocator does not hand all of it back — and that
    excess stays for the whole run. Measured: fine-tuning entered training with 1.51 GB resident against
    pretraining's 0.96 GB and peaked ~1 GB higher at the same mini-batch (bench/README.md §2f).
    """
    extra = 4 if guide else 0
    estimate = shape.parameters * (16 + extra) + int(RUNTIME_OVERHEAD_GB * GB)
    if resident is None:
        return estimate
    bare = shape.parameters * (4 + extra) + int(BARE_PROCESS_GB * GB)
    return estimate + max(0, resident - bare)


def resident_bytes() -> int | None:
    """This process's resident set size (Linux ``/proc/self/status``), None where it cannot be read."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def mini_batch_for(
    shape: ModelShape,
    seq_len: int,
    batch_size: int,
    *,
    memory_gb: float = DEFAULT_MEMORY_GB,
    guide: bool = False,
    resident: int | None = None,
) -> int:
    """The largest mini-batch (texts per forward/backward) whose activations fit what the budget leaves.

    At least 1 (a budget smaller than the weights cannot be met by any mini-batch: the caller is told by the
    estimate it logs), at most ``batch_size`` (a mini-batch as large as the batch is the plain loss).
    """
    free = memory_gb * GB - fixed_bytes(shape, guide=guide, resident=resident)
    per_text = activation_bytes_per_text(shape, seq_len)
    n = int(free // per_text) if free > 0 else 1
    return max(1, min(batch_size, n))
