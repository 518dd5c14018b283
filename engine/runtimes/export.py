"""Exporting a model folder to OpenVINO IR: where the files live, and the one step that needs torch.

Where: a registry version (any folder under ``KRET_HOME/models``) keeps its IR inside itself, in
``<version>/openvino/`` — exported at registration and at the default-model build, so trained versions are
served without a manual step. A folder or hub model kret did not build is exported lazily, on first use, into
``KRET_HOME/cache/openvino/<fingerprint>/``: kret never writes into a user's folder. The fingerprint files do
not include ``openvino/``, so exporting never changes a model's identity.

How: ``openvino.convert_model`` on the model's transformer (transformers' AutoModel, token vectors out), with
dynamic batch and length; pooling and normalisation stay in numpy (``st_folder``). Weights are saved as fp32
(``compress_to_fp16=False``) so ``precision = "fp32"`` is exact; ``auto`` lets OpenVINO pick (bf16 on CPUs
with AVX512-BF16/AMX). Serving needs only ``openvino``; exporting needs torch + transformers too.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
import warnings
from pathlib import Path

from kret.engine.models import ModelInfo
from kret.engine.runtimes.st_folder import TORCH_HINT, FolderSpec
from kret.errors import ModelError

IR_DIRNAME = "openvino"
IR_XML = "model.xml"
EXPORT_META = "export.json"
EXPORT_FORMAT = 1


def ir_dir_for(info: ModelInfo, models_dir: Path, cache_dir: Path) -> Path:
    """Inside a registry version, else under the cache keyed by fingerprint (never in a user's folder)."""
    path = Path(info.path).resolve()
    try:
        inside = path.parent == Path(models_dir).resolve()
    except OSError:
        inside = False
    if inside:
        return path / IR_DIRNAME
    return Path(cache_dir) / "openvino" / info.fingerprint[:32]


def ir_is_current(ir_dir: Path, fingerprint: str) -> bool:
    meta = ir_dir / EXPORT_META
    if not (ir_dir / IR_XML).is_file() or not meta.is_file():
        return False
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return data.get("fingerprint") == fingerprint and data.get("format") == EXPORT_FORMAT


def ensure_ir(info: ModelInfo, ir_dir: Path, progress=None) -> Path:
    """The fp32 IR of ``info`` in ``ir_dir``, exported first when missing or stale; returns model.xml."""
    if ir_is_current(ir_dir, info.fingerprint):
        return ir_dir / IR_XML
    export_openvino(Path(info.path), ir_dir, fingerprint=info.fingerprint, label=info.name, progress=progress)
    return ir_dir / IR_XML


def export_openvino(
    model_dir: Path, ir_dir: Path, *, fingerprint: str, label: str = "", progress=None
) -> Path:
    """Convert ``model_dir``'s transformer to OpenVINO IR in ``ir_dir`` (atomically: temp folder + rename).

    Takes ~10-20 s for e5-small on 2 cores. Raises ``ModelError`` naming ``runtime = "torch"`` when the
    model cannot be converted.
    """
    say = progress or (lambda _msg: None)
    label = label or Path(model_dir).name
    spec = FolderSpec.read(Path(model_dir), label)  # refuses module stacks the runtime cannot reproduce
    try:
        import openvino as ov
        import torch
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise ModelError(
            f"exporting model {label} to OpenVINO needs torch and transformers ({exc}); "
            'install kret with its default dependencies, or set runtime = "torch"'
        ) from None
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    say(f"exporting {label} to OpenVINO")
    started = time.perf_counter()
    try:
        hf = AutoModel.from_pretrained(str(spec.transformer_dir), dtype=torch.float32)
    except TypeError:
        hf = AutoModel.from_pretrained(str(spec.transformer_dir), torch_dtype=torch.float32)
    except Exception as exc:
        raise ModelError(f"cannot load model {label} for export to OpenVINO: {exc}; {TORCH_HINT}") from None
    hf.eval()

    class _TokenVectors(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    example = {
        "input_ids": torch.ones((2, 16), dtype=torch.long),
        "attention_mask": torch.ones((2, 16), dtype=torch.long),
    }
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes about encoder-irrelevant causal/padding branches
            ov_model = ov.convert_model(_TokenVectors(hf), example_input=example)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"OpenVINO cannot convert model {label} ({first[:200]}); {TORCH_HINT}") from None
    finally:
        del hf
    ir_dir = Path(ir_dir)
    ir_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = ir_dir.with_name(f".{ir_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        ov.save_model(ov_model, str(tmp / IR_XML), compress_to_fp16=False)
        meta = {
            "format": EXPORT_FORMAT,
            "fingerprint": fingerprint,
            "openvino": ov.__version__,
            "torch": torch.__version__,
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds": round(time.perf_counter() - started, 1),
        }
        (tmp / EXPORT_META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        if ir_dir.exists():
            shutil.rmtree(ir_dir, ignore_errors=True)
        os.replace(tmp, ir_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ir_dir / IR_XML


def export_into_folder(model_dir: Path, progress=None) -> Path:
    """Export a model folder kret owns (a registry version being built or registered) into its own
    ``openvino/`` subfolder; the fingerprint is computed from the folder itself."""
    from kret.engine.models import fingerprint_dir

    model_dir = Path(model_dir)
    return export_openvino(
        model_dir, model_dir / IR_DIRNAME, fingerprint=fingerprint_dir(model_dir), progress=progress
    )


def export_registered(info: ModelInfo) -> dict[str, object]:
    """Export a just-registered version; never fails the registration (the record says what happened).

    A model OpenVINO cannot convert stays registered and servable with ``runtime = "torch"``.
    """
    started = time.perf_counter()
    try:
        export_openvino(
            Path(info.path), Path(info.path) / IR_DIRNAME, fingerprint=info.fingerprint, label=info.name
        )
    except ModelError as exc:
        return {"ok": False, "error": str(exc)}
    return {"ok": True, "seconds": round(time.perf_counter() - started, 1)}
