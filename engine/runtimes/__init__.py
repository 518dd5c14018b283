"""Serving runtimes: which engine turns text into vectors, at which numeric precision.

``load_embedder`` is the one way in. ``runtime`` is ``"openvino"`` (default; no torch/transformers import)
or ``"torch"`` (sentence-transformers fp32, for models OpenVINO cannot convert). ``precision`` is ``"auto"``
(the runtime's default: OpenVINO picks bf16 on CPUs that have it), ``"fp32"`` or ``"int8"`` (OpenVINO only).
A collection records the runtime and precision that built it (``serving_record``); searches use the same, as
query and passage vectors must come from the same numeric path (``kret.engine.collection.check_serving``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from kret.engine.embedder import Embedder
from kret.engine.models import ModelInfo
from kret.errors import ConfigError, ModelError


def block_openvino_telemetry() -> None:
    """Keep OpenVINO's converter and NNCF from sending usage telemetry; called before kret imports openvino.

    Both report to Google Analytics through ``openvino_telemetry`` unless a consent file in the user's home
    says no, from processes forked by a thread pool. kret opens no network connection on its own, and a fork
    from another thread while numpy runs a BLAS call hung the process for good (OpenBLAS's fork handler stops
    its worker threads mid-call): the fine-tuning gate's paired tests, right after registering — and so
    exporting — the new model. Both tools use their own no-op stub when the package cannot be imported; a
    process that imported ``openvino_telemetry`` itself keeps it.
    """
    sys.modules.setdefault("openvino_telemetry", None)  # None: "import openvino_telemetry" raises ImportError


block_openvino_telemetry()

RUNTIMES = ("openvino", "torch")
PRECISIONS = ("auto", "fp32", "int8")


def check_combination(runtime: str, precision: str) -> None:
    """One line naming the valid choices for an unknown runtime/precision or an impossible pair."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if runtime == "torch" and precision == "int8":
        raise ConfigError(
            "precision 'int8' is not available with runtime 'torch' (it runs fp32 only); "
            'use runtime = "openvino" for int8'
        )


def load_embedder(
    info: ModelInfo,
    *,
    runtime: str = "openvino",
    precision: str = "auto",
    models_dir: Path,
    cache_dir: Path,
    threads: int | None = None,
    batch_size: int = 32,
    device: str | None = None,
    calibration: Any = None,
    calibration_sha: str | None = None,
    progress=None,
) -> Embedder:
    """Load ``info`` with the given runtime and precision, exporting / quantising on first use.

    For int8, ``calibration_sha`` (from a collection's manifest) selects the exact quantised model that
    built the collection; otherwise ``calibration`` (an ``int8.Calibration``) or kret's sample set is used.
    """
    check_combination(runtime, precision)
    if runtime == "torch":
        from kret.engine.runtimes.torch_rt import TorchEmbedder

        return TorchEmbedder(info, device=device, batch_size=batch_size, threads=threads, precision=precision)
    try:
        import openvino  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"runtime 'openvino' needs the openvino package ({exc}); or set runtime = \"torch\""
        ) from None
    from kret.engine.runtimes.export import ensure_ir, ir_dir_for, ir_is_current
    from kret.engine.runtimes.openvino_rt import OpenVINOEmbedder

    home_ir = ir_dir_for(info, models_dir, cache_dir)
    shipped = Path(info.path) / "openvino"
    # A folder that ships a current IR of itself (a test fixture, a copied version) is served read-only.
    fp32_xml = (
        shipped / "model.xml"
        if shipped != home_ir and ir_is_current(shipped, info.fingerprint)
        else ensure_ir(info, home_ir, progress=progress)
    )
    blobs = Path(cache_dir) / "openvino-blobs"
    extra: dict[str, Any] = {}
    xml = fp32_xml
    if precision == "int8":
        from kret.engine.runtimes import int8
        from kret.engine.runtimes.st_folder import FolderSpec
        from kret.engine.runtimes.tokenizer import FolderTokenizer

        found = None
        if calibration_sha:
            found = int8.find_int8(home_ir, calibration_sha) or (
                int8.find_int8(shipped, calibration_sha) if shipped != home_ir else None
            )
            if found is None:
                calibration = int8.samples_calibration()
                if calibration.sha256 != calibration_sha:
                    raise ModelError(
                        f"the int8 model of {info.short} calibrated on {calibration_sha[:12]} is missing from "
                        f'{home_ir}; rebuild the collection, or search it with precision = "auto" after '
                        "`kret reindex`"
                    )
        if found is not None:
            xml = found
            cal_record = int8.read_record(found.parent)
        else:
            calibration = calibration or int8.samples_calibration()
            spec = FolderSpec.read(Path(info.path), info.name)
            tok = FolderTokenizer(spec.transformer_dir, spec.max_seq_length, info.name)
            xml = int8.ensure_int8(fp32_xml, home_ir, tok, spec.prompts, calibration, progress=progress)
            cal_record = calibration.record()
        extra["calibration"] = {"source": cal_record.get("source"), "sha256": cal_record.get("sha256")}
    return OpenVINOEmbedder(
        info, xml, precision=precision, batch_size=batch_size, threads=threads, blob_cache=blobs, extra=extra
    )


def serving_record(embedder: Embedder) -> dict[str, Any]:
    """What a collection manifest stores about the numeric path of its vectors."""
    return dict(embedder.serving)
