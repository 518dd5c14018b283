"""One contrastive training loop for every kret trainer (pre-training and hard-negative fine-tuning).

Both trainers differ only in where their rows come from; the loop is the same: in-batch negatives (plus any
mined hard negatives) under MultipleNegativesRankingLoss or GISTEmbedLoss, optionally wrapped in
MatryoshkaLoss, run by the sentence-transformers trainer. That trainer is what makes the same code correct on
a CPU, on one GPU (bf16/fp16) and on several (``torchrun`` / ``accelerate launch`` start one process per GPU
and the trainer wraps the model in DDP); kret adds budgets, resumable checkpoints, progress and a stats dict
for the lineage.

Why the settings are what they are:

* ``NO_DUPLICATES`` batches: with in-batch negatives a passage that appears twice in a batch is its own
  negative, a false negative that pushes the model the wrong way.
* ``dataloader_drop_last``: a short last batch has fewer negatives, so its loss is not comparable; a data
  set smaller than one batch shrinks the batch instead (reported as ``batch_capped``).
* ``mini_batch_size`` switches to the Cached (GradCache) losses: the loss sees the whole batch as
  negatives while only a mini-batch of activations is held at once, which is how KoE5-PT's 32k batch fits.
* With several processes the losses gather embeddings across devices, so each query sees the negatives
  of the global batch, not only its own GPU's share.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kret.engine.models import ModelInfo
from kret.errors import TrainingError, UserInputError

from .allocator import large_blocks_mapped
from .losses import DEFAULT_LOSS, LOSSES, LossContext, get_loss
from .memory import DEFAULT_MEMORY_GB, mini_batch_for, model_shape, resident_bytes

if TYPE_CHECKING:  # pragma: no cover - typing only
    import datasets

__all__ = ["LOSSES", "FitConfig", "fit", "is_main_process", "world_size"]

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")
DEFAULT_TRAIN_SEQ_LENGTH = 256
_NEGATIVE_RE = re.compile(r"^negative(?:_(\d+))?$")


@dataclass
class FitConfig:
    """Hyper-parameters of one training run; stored whole in the model's lineage."""

    batch_size: int = 32
    # Texts per forward/backward of the cached (GradCache) loss: big effective batch, small memory. None =
    # sized from the model, the training sequence length and ``memory_gb`` (kret.trainer.memory); the plain
    # loss is used when the whole batch fits anyway. ``cached=False`` forces the plain loss.
    mini_batch_size: int | None = None
    cached: bool = True
    memory_gb: float = DEFAULT_MEMORY_GB
    # "auto": bf16 on GPUs that support it, fp16 on other GPUs, fp32 on CPU; "bf16" also on CPU (autocast);
    # "fp32" everywhere. On CPU bf16 only pays with AVX512-BF16/AMX (bench/README.md, "Trainer memory").
    precision: str = "auto"
    lr: float = 1e-5
    epochs: float = 1.0
    max_steps: int | None = None  # budget; overrides epochs
    warmup_ratio: float = 0.1
    matryoshka_dims: list[int] | None = (
        None  # e.g. [384, 256, 128, 64] -> MatryoshkaLoss around the base loss
    )
    loss: str = DEFAULT_LOSS  # a name in kret.trainer.losses.LOSSES
    seed: int = 0
    save_steps: int = 200
    # Also checkpoint when this many minutes passed since the last one (None = steps only). A CPU step can take a
    # minute: 200 steps are hours, and an interrupt (Ctrl-C, a closed laptop lid) lost all of them.
    save_minutes: float | None = 15.0
    resume: bool = False  # continue from the newest checkpoint in run_dir
    # optional extras
    matryoshka_weights: list[float] | None = None  # one per dim; None = all 1 (KaLM uses 1/.3/.2/.1/.1)
    # InfoNCE temperature of both losses (MNRL's scale is its inverse). e5 was trained at 0.01, which is why its
    # cosines sit in 0.7-1.0; sentence-transformers' default of 0.05 (scale 20) asks for margins that geometry
    # does not have (bench/README.md, Trainer I, measures both).
    temperature: float = 0.01
    weight_decay: float = 0.01
    logging_steps: int | None = (
        None  # None = about 100 loss points per run, at least every step for short runs
    )
    save_total_limit: int = 2
    torch_threads: int | None = None  # CPU intra-op threads; None = torch's default
    # Training-time truncation in tokens (None = the model's own limit). Cost grows with length, so this is
    # the knob for a CPU budget; the saved model keeps its own limit, so indexing still sees whole chunks.
    # 256 covers a question and a paragraph-sized passage (KorQuAD paragraphs: median ~200 tokens); a step at
    # 512 costs more than twice as much and needs twice the activation memory.
    max_seq_length: int | None = DEFAULT_TRAIN_SEQ_LENGTH

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Refuse settings that would fail deep inside the trainer with a confusing message."""
        if self.batch_size < 2:
            raise UserInputError("batch_size must be >= 2 (in-batch negatives need at least one other pair)")
        if self.mini_batch_size is not None and self.mini_batch_size < 1:
            raise UserInputError("mini_batch_size must be >= 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UserInputError(f"learning rate must be a positive number, got {self.lr}")
        if self.max_steps is None and not (self.epochs > 0 and math.isfinite(self.epochs)):
            raise UserInputError(f"epochs must be > 0, got {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise UserInputError("max_steps must be >= 1")
        if not 0 <= self.warmup_ratio < 1:
            raise UserInputError("warmup_ratio must be in [0, 1)")
        get_loss(self.loss)  # an unknown name is a UserInputError naming the registry's losses
        if not 0 < self.temperature <= 1:
            raise UserInputError(f"temperature must be in (0, 1], got {self.temperature}")
        if not self.memory_gb > 0:
            raise UserInputError(f"memory budget must be > 0 GB, got {self.memory_gb}")
        if self.precision not in PRECISIONS:
            raise UserInputError(
                f"unknown precision {self.precision!r}; expected one of {', '.join(PRECISIONS)}"
            )
        if self.save_steps < 1:
            raise UserInputError("save_steps must be >= 1")
        if self.save_minutes is not None and not (self.save_minutes > 0 and math.isfinite(self.save_minutes)):
            raise UserInputError(f"save_minutes must be > 0 minutes, got {self.save_minutes}")
        if self.max_seq_length is not None and self.max_seq_length < 8:
            raise UserInputError(f"max_seq_length must be >= 8 tokens, got {self.max_seq_length}")
        if self.matryoshka_dims is not None:
            dims = self.matryoshka_dims
            if not dims or any(int(d) != d or d < 1 for d in dims) or len(set(dims)) != len(dims):
                raise UserInputError(f"matryoshka dims must be distinct positive integers, got {dims}")
            if self.matryoshka_weights is not None and len(self.matryoshka_weights) != len(dims):
                raise UserInputError("matryoshka_weights needs one weight per dimension")


# ---------------------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------------------


def world_size() -> int:
    """Processes of this run as torchrun / accelerate launch announce them (1 for a plain python run)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def is_main_process() -> bool:
    """Rank 0 writes the registry and prints; the other ranks of a multi-GPU run only train."""
    return os.environ.get("RANK", "0") in ("", "0")


def barrier() -> None:
    """Wait for every rank when a process group exists (after training); a no-op in a single process."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover
        return
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


# ---------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------


def _training_columns(columns: list[str]) -> list[str]:
    """anchor, positive, then the negatives in numeric order; the loss reads columns by position."""
    if "anchor" not in columns or "positive" not in columns:
        raise TrainingError(f"training rows need 'anchor' and 'positive' columns, got {columns}")
    negatives = [c for c in columns if _NEGATIVE_RE.match(c)]
    negatives.sort(key=lambda c: int(_NEGATIVE_RE.match(c).group(1) or 0))
    return ["anchor", "positive", *negatives]


def _as_dataset(rows: datasets.Dataset | list[dict[str, str]]) -> datasets.Dataset:
    import datasets

    if isinstance(rows, datasets.Dataset):
        ds = rows
    else:
        rows = list(rows)
        if not rows:
            raise TrainingError("no training rows")
        ds = datasets.Dataset.from_list(rows)
    cols = _training_columns(list(ds.column_names))
    # Extra columns (pair_id, source...) would be fed to the loss as more texts: keep only the inputs.
    return ds.select_columns(cols)


def _column_prompts(columns: list[str], prompts: dict[str, str]) -> dict[str, str]:
    query, passage = prompts.get("query", ""), prompts.get("passage", "")
    out = {}
    for col in columns:
        prompt = query if col == "anchor" else passage
        if prompt:
            out[col] = prompt
    return out


def _newest_checkpoint(folder: Path) -> Path | None:
    found = []
    if folder.is_dir():
        for p in folder.iterdir():
            m = re.fullmatch(r"checkpoint-(\d+)", p.name)
            if m and p.is_dir() and (p / "trainer_state.json").is_file():
                found.append((int(m.group(1)), p))
    return max(found)[1] if found else None


# ---------------------------------------------------------------------------------------------------------
# Loss
# ---------------------------------------------------------------------------------------------------------


def resolve_mini_batch(
    model: Any, cfg: FitConfig, batch_size: int, n_negative_columns: int = 0
) -> tuple[int | None, dict[str, Any]]:
    """The cached loss's mini-batch (None = the plain loss) and how it was chosen, for the lineage.

    An explicit ``mini_batch_size`` wins. Otherwise, with ``cached``, the mini-batch is sized from the model's
    shape, the training sequence length and ``memory_gb`` (``kret.trainer.memory``); when the whole batch
    fits, the plain loss computes the same thing without GradCache's second forward pass.
    """
    seq_len = int(model.max_seq_length or 512)
    shape = model_shape(model)
    info: dict[str, Any] = {"memory_gb": cfg.memory_gb, "seq_len": seq_len, "parameters": shape.parameters}
    if cfg.mini_batch_size:
        info["how"] = "given"
        return min(cfg.mini_batch_size, batch_size), info
    loss = get_loss(cfg.loss)
    # e.g. GISTEmbedLoss takes one hard negative per row, its cached form any number (same loss at any mini-batch)
    needs_cache = loss.needs_cache(n_negative_columns)
    if not cfg.cached and not needs_cache:
        info["how"] = "cache off"
        return None, info
    resident = resident_bytes()
    if resident is not None:
        info["resident_gb_before"] = round(resident / 1e9, 2)
    mini = mini_batch_for(
        shape, seq_len, batch_size, memory_gb=cfg.memory_gb, guide=loss.guided, resident=resident
    )
    info["how"] = "sized from the memory budget"
    if mini >= batch_size and not needs_cache:
        info["how"] = "batch fits the memory budget: plain loss"
        return None, info
    return mini, info


def _build_loss(model: Any, base: ModelInfo, cfg: FitConfig, mini: int | None, device: str | None) -> Any:
    ctx = LossContext(
        base=base, temperature=cfg.temperature, mini_batch=mini, device=device, gather=world_size() > 1
    )
    inner = get_loss(cfg.loss).build(model, ctx)
    if not cfg.matryoshka_dims:
        return inner
    dims = sorted(cfg.matryoshka_dims, reverse=True)
    full = _model_dim(model)
    if dims[0] > full:
        raise UserInputError(f"matryoshka dim {dims[0]} is larger than the model's dimension {full}")
    weights = None
    if cfg.matryoshka_weights is not None:
        by_dim = dict(zip(cfg.matryoshka_dims, cfg.matryoshka_weights, strict=True))
        weights = [by_dim[d] for d in dims]
    from sentence_transformers.sentence_transformer import losses

    return losses.MatryoshkaLoss(model, inner, matryoshka_dims=dims, matryoshka_weights=weights)


def _model_dim(model: Any) -> int:
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(getter())


def _loss_name(cfg: FitConfig, mini: int | None) -> str:
    name = get_loss(cfg.loss).display_name(mini)
    if cfg.matryoshka_dims:
        name = f"MatryoshkaLoss({name})"
    return name


# ---------------------------------------------------------------------------------------------------------
# Progress
# ---------------------------------------------------------------------------------------------------------


def _progress_callback(progress: Callable[..., None], examples_per_step: int) -> Any:
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        """Turns trainer events into the kret progress protocol (stage/total/advance + loss and rate)."""

        def __init__(self) -> None:
            self.loss: float | None = None
            self.started = time.perf_counter()
            self.first_step = 0

        def _rate(self, state: Any) -> float:
            done = (state.global_step - self.first_step) * examples_per_step
            return done / max(time.perf_counter() - self.started, 1e-9)

        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ARG002 - HF signature
            self.started = time.perf_counter()
            self.first_step = state.global_step
            progress(stage="train", total=state.max_steps, advance=0, completed=state.global_step)

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ARG002 - HF signature
            progress(stage="train", total=state.max_steps, advance=1, loss=self.loss, rate=self._rate(state))

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ARG002 - HF signature
            if logs and "loss" in logs:
                self.loss = float(logs["loss"])
                progress(stage="train", advance=0, loss=self.loss, rate=self._rate(state))

    return _Progress()


def _save_every(minutes: float) -> Any:
    from transformers import TrainerCallback

    class _SaveEvery(TrainerCallback):
        """Asks the trainer for a checkpoint when ``minutes`` passed since the last one (or since the start), on
        top of the step-based ones, so that `--resume` after an interrupt repeats at most that much work."""

        def __init__(self) -> None:
            self.last = time.monotonic()

        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ARG002 - HF signature
            self.last = time.monotonic()

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ARG002 - HF signature
            if time.monotonic() - self.last >= minutes * 60:
                control.should_save = True
            return control

        def on_save(self, args, state, control, **kwargs):  # noqa: ARG002 - HF signature
            self.last = time.monotonic()

    return _SaveEvery()


@contextlib.contextmanager
def _quiet_stderr(active: bool) -> Iterator[None]:
    if not active:
        yield
        return
    with contextlib.redirect_stderr(io.StringIO()):
        yield


# ---------------------------------------------------------------------------------------------------------
# fit
# ---------------------------------------------------------------------------------------------------------


def fit(
    base: ModelInfo,
    rows: datasets.Dataset | list[dict[str, str]],
    cfg: FitConfig,
    *,
    run_dir: Path,
    prompts: dict[str, str],
    progress: Callable[..., None] | None = None,
    model: Any | None = None,
) -> tuple[Path, dict]:
    """Train `base` on rows with columns anchor, positive[, negative_1..negative_n] (in-batch negatives + any given
    hard negatives). `prompts` = {"query": ..., "passage": ...} of the base model: anchors get the query prompt,
    positives/negatives the passage prompt (use the trainer's `prompts=` column mapping). Writes checkpoints under
    run_dir/checkpoints, the final sentence-transformers folder under run_dir/final, and returns
    (final_dir, stats) with stats = {steps, examples, seconds, examples_per_s, loss_first, loss_last, device, loss_name, effective_batch}.

    ``model`` is an already loaded ``SentenceTransformer`` of ``base`` to train in place (it is modified),
    which saves loading the weights and tokenizer a second time when the caller has them already.
    ``steps`` is the run's global step (a resumed run counts the steps done before it); ``steps_run`` and
    ``examples`` count this call only. On a multi-process run every rank returns, only rank 0 writes
    ``final``.
    """
    cfg.validate()
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        SentenceTransformerTrainingArguments,
    )

    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    final_dir = run_dir / "final"
    ds = _as_dataset(rows)
    n_rows = len(ds)
    if n_rows < 2:
        raise TrainingError(f"{n_rows} training row(s): in-batch negatives need at least 2")
    n_proc = world_size()
    batch_size = cfg.batch_size
    batch_capped = False
    if n_rows < batch_size * n_proc:
        # drop_last would otherwise leave zero batches; a smaller full batch still trains correctly.
        batch_size, batch_capped = max(2, n_rows // n_proc), True
        log.warning("only %d rows: batch size capped from %d to %d", n_rows, cfg.batch_size, batch_size)
    resume_from = _newest_checkpoint(ckpt_dir) if cfg.resume else None
    if cfg.resume and resume_from is None:
        log.warning("--resume: no checkpoint under %s, starting from step 0", ckpt_dir)

    cuda = torch.cuda.is_available()
    if cfg.precision == "fp32":
        bf16 = False
    elif cfg.precision == "bf16":
        if cuda and not torch.cuda.is_bf16_supported():
            raise UserInputError("--precision bf16: this GPU does not support bf16 (use auto for fp16)")
        bf16 = True  # on CPU: torch.autocast(cpu, bfloat16) around the forward; weights stay fp32
    else:
        bf16 = bool(cuda and torch.cuda.is_bf16_supported())
    fp16 = cuda and not bf16 and cfg.precision == "auto"
    effective_batch = batch_size * n_proc
    est_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * (n_rows // effective_batch or 1)))
    logging_steps = cfg.logging_steps or max(1, min(50, est_steps // 100))

    if model is None:
        try:
            model = SentenceTransformer(base.path, local_files_only=True)
        except Exception as exc:
            raise TrainingError(f"cannot load base model {base.short} from {base.path}: {exc}") from None
    model_max_length = model.max_seq_length
    if cfg.max_seq_length:
        model.max_seq_length = min(cfg.max_seq_length, model_max_length)
    columns = list(ds.column_names)
    n_neg = sum(1 for c in columns if _NEGATIVE_RE.match(c))
    mini, mini_info = resolve_mini_batch(model, cfg, batch_size, n_neg)
    log.info("loss %s, mini-batch %s (%s)", _loss_name(cfg, mini), mini, mini_info["how"])
    args = SentenceTransformerTrainingArguments(
        output_dir=str(ckpt_dir),
        per_device_train_batch_size=batch_size,
        learning_rate=cfg.lr,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps if cfg.max_steps is not None else -1,
        # A float in [0, 1) is a ratio of the total steps (transformers v5 deprecates warmup_ratio).
        warmup_steps=float(cfg.warmup_ratio),
        weight_decay=cfg.weight_decay,
        bf16=bf16,
        fp16=fp16,
        use_cpu=bf16 and not cuda,  # transformers asks for it to accept bf16 (autocast) on a CPU
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        prompts=_column_prompts(columns, prompts) or None,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        logging_strategy="steps",
        logging_steps=logging_steps,
        logging_first_step=True,
        report_to=[],
        dataloader_drop_last=True,
        dataloader_pin_memory=cuda,
        seed=cfg.seed,
        data_seed=cfg.seed,
        disable_tqdm=progress is not None,
        # No unused parameters in a sentence-transformers forward; the search for them costs every step.
        ddp_find_unused_parameters=False,
    )
    # args.device is this process's own GPU under torchrun; the GIST guide must sit beside the model there.
    loss = _build_loss(model, base, cfg, mini, str(args.device))
    callbacks = [_progress_callback(progress, effective_batch)] if progress else []
    if cfg.save_minutes is not None and n_proc == 1:
        # One process only: ranks whose clocks disagree would not all enter the checkpoint's collective save.
        callbacks.append(_save_every(cfg.save_minutes))
    with _quiet_stderr(progress is not None):
        # The model-card callback draws a tqdm bar while the trainer is built; it would tear a rich display.
        trainer = SentenceTransformerTrainer(
            model=model, args=args, train_dataset=ds, loss=loss, callbacks=callbacks
        )
    if progress is not None:
        from transformers.trainer_callback import PrinterCallback

        # The caller draws its own progress; the printer would interleave raw log dicts with it.
        trainer.remove_callback(PrinterCallback)
    start_step = 0
    if resume_from is not None:
        import json

        start_step = int(json.loads((resume_from / "trainer_state.json").read_text())["global_step"])
    started = time.perf_counter()
    try:
        with large_blocks_mapped(active=not cuda):
            trainer.train(resume_from_checkpoint=str(resume_from) if resume_from is not None else None)
    except torch.OutOfMemoryError as exc:
        raise TrainingError(
            f"out of memory at batch size {batch_size}: set a mini batch size (--mini-batch-size, the cached "
            f"GradCache loss) or a smaller batch ({exc.__class__.__name__})"
        ) from None
    seconds = time.perf_counter() - started
    model.max_seq_length = model_max_length
    if trainer.is_world_process_zero():
        trainer.save_model(str(final_dir))
    state = trainer.state
    losses_seen = [float(e["loss"]) for e in state.log_history if "loss" in e]
    steps_run = state.global_step - start_step
    examples = steps_run * effective_batch
    stats = {
        "steps": int(state.global_step),
        "steps_run": int(steps_run),
        "resumed_from_step": start_step if resume_from is not None else None,
        "examples": int(examples),
        "rows": n_rows,
        "seconds": round(seconds, 2),
        "examples_per_s": round(examples / seconds, 3) if seconds > 0 else None,
        "loss_first": losses_seen[0] if losses_seen else None,
        "loss_last": losses_seen[-1] if losses_seen else None,
        "loss_history": [[e["step"], round(float(e["loss"]), 5)] for e in state.log_history if "loss" in e],
        "device": str(args.device),
        "precision": "bf16" if bf16 else "fp16" if fp16 else "fp32",
        "processes": n_proc,
        "loss_name": _loss_name(cfg, mini),
        "batch_size": batch_size,
        "batch_capped": batch_capped,
        "effective_batch": effective_batch,
        "mini_batch_size": mini,
        "mini_batch": mini_info,
        "max_seq_length": min(cfg.max_seq_length or model_max_length, model_max_length),
    }
    return final_dir, stats
