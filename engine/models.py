"""Which model a name means, what exactly it is (fingerprint), and where trained versions are kept.

A collection must be searched with the very model that built it, so every model gets a fingerprint: a hash of
its weights and of everything that changes its vectors (tokenizer, pooling, prompts, max length). Names are
not enough: two folders called "e5" can hold different weights.

The registry is a folder per version under ``KRET_HOME/models`` holding a sentence-transformers model and
``kret_model.json`` (fingerprint + lineage). ``models/DEFAULT`` names the version new indexes use.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kret.errors import ModelError, RegistryError

META_FILE = "kret_model.json"
DEFAULT_POINTER = "DEFAULT"
# Files whose bytes decide the vectors a sentence-transformers folder produces.
_FINGERPRINT_FILES = (
    "config.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "tokenizer.json",
    "sentencepiece.bpe.model",
    "vocab.txt",
    "1_Pooling/config.json",
    "model.safetensors",
    "pytorch_model.bin",
)


@dataclass
class ModelInfo:
    """A resolved model: where to load it from and what it is."""

    name: str
    path: str  # local folder the weights are loaded from
    fingerprint: str
    lineage: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # what resolves to this model again: a registry version, a folder, or a hub name

    @property
    def short(self) -> str:
        return f"{self.name} ({self.fingerprint[:12]})"


def fingerprint_dir(path: Path) -> str:
    """Hash of the files that decide a model's output; read in 1 MiB blocks (a 470 MB model takes ~1 s)."""
    h = hashlib.sha256()
    found = False
    for rel in _FINGERPRINT_FILES:
        f = path / rel
        if not f.is_file():
            continue
        found = True
        h.update(rel.encode() + b"\0")
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    for extra in sorted(path.glob("*.safetensors")):
        if extra.name != "model.safetensors":
            found = True
            h.update(extra.name.encode() + b"\0")
            h.update(extra.read_bytes())
    if not found:
        raise ModelError(f"{path} does not look like a sentence-transformers model (no config or weights)")
    return h.hexdigest()


def _read_meta(path: Path) -> dict[str, Any]:
    meta = path / META_FILE
    if meta.is_file():
        try:
            return json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"cannot read {meta}: {exc}") from None
    return {}


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that readers see the old or the new file, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


class ModelRegistry:
    """Model versions under ``models_dir`` and the resolution of user-given model specs."""

    def __init__(self, models_dir: Path, cache_dir: Path | None = None) -> None:
        self.models_dir = models_dir
        self.cache_dir = cache_dir or models_dir.parent / "cache"

    # resolution -----------------------------------------------------------------------------------
    def resolve(self, spec: str = "default", *, build_default: bool = True, progress=None) -> ModelInfo:
        """Turn 'default', a version, a folder or a hub name into a loadable model with its fingerprint."""
        spec = (spec or "default").strip()
        if spec == "default":
            version = self.default_version()
            if version is not None:
                return self.get(version)
            return self._builtin(build=build_default, progress=progress)
        from kret.engine.default_model import DEFAULT_MODEL_NAME

        if spec == DEFAULT_MODEL_NAME:
            return self._builtin(build=build_default, progress=progress)
        if self._version_dir(spec).is_dir():
            return self.get(spec)
        path = Path(spec).expanduser()
        if path.is_dir():
            return self._local(path)
        if spec.startswith((".", "/", "~")) or os.sep in spec and not _looks_like_hub_name(spec):
            raise ModelError(f"model folder {spec} does not exist")
        return self._hub(spec)

    def _builtin(self, *, build: bool, progress) -> ModelInfo:
        from kret.engine.default_model import DEFAULT_MODEL_NAME, ensure_default_model

        target = self._version_dir(DEFAULT_MODEL_NAME)
        if not target.is_dir():
            if not build:
                raise ModelError("the default model is not built yet: run `kret models pull`")
            ensure_default_model(self.models_dir, progress=progress)
        return self.get(DEFAULT_MODEL_NAME)

    def _local(self, path: Path) -> ModelInfo:
        meta = _read_meta(path)
        fp = meta.get("fingerprint") or self._cached_fingerprint(path)
        resolved = str(path.resolve())
        return ModelInfo(
            name=meta.get("name") or path.name, path=resolved, fingerprint=fp, lineage=meta, source=resolved
        )

    #: Whether ``_hub`` may download a model that is not in the local hub cache (``Settings.allow_downloads``,
    #: set by ``Kret``). Off by default: a typo such as ``-m e5small`` must not reach the network.
    allow_downloads: bool = False

    def _hub(self, name: str) -> ModelInfo:
        from huggingface_hub import snapshot_download

        try:
            local = snapshot_download(repo_id=name, local_files_only=True)
        except Exception:
            if not self.allow_downloads:
                raise ModelError(
                    f"model {name!r} is not a registry version, a folder, or a cached hub model (see `kret "
                    "models list`); to download it from the Hugging Face hub, pass --allow-downloads or set "
                    "KRET_ALLOW_DOWNLOADS=1"
                ) from None
            try:
                local = snapshot_download(repo_id=name)
            except Exception as exc:
                raise ModelError(
                    f"model {name!r} is not a kret version, not a folder, and could not be fetched from the "
                    f"model hub ({type(exc).__name__}); use 'default' or a local sentence-transformers folder"
                ) from None
        info = self._local(Path(local))
        info.name = name
        info.source = name
        return info

    def _cached_fingerprint(self, path: Path) -> str:
        """Fingerprints of folders kret did not build are cached by file sizes and mtimes."""
        stamp = []
        for rel in _FINGERPRINT_FILES:
            f = path / rel
            if f.is_file():
                st = f.stat()
                stamp.append(f"{rel}:{st.st_size}:{st.st_mtime_ns}")
        key = hashlib.sha256(f"{path.resolve()}|{'|'.join(stamp)}".encode()).hexdigest()
        cache = self.cache_dir / "fingerprints" / f"{key}.txt"
        if cache.is_file():
            return cache.read_text().strip()
        fp = fingerprint_dir(path)
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(fp)
        except OSError:
            pass
        return fp

    def verify(self, info: ModelInfo) -> None:
        """Refuse a model folder whose weights no longer match the fingerprint its ``kret_model.json``
        records (a copy with changed weights, an interrupted overwrite): the fingerprint is what
        collections trust, so it must be recomputed, not just read.

        The recomputed hash is cached by path + file sizes + mtime_ns (``_cached_fingerprint``): a warm
        start costs one ``stat`` per file; any change to the files makes a new key and a fresh hash.
        Folders with no recorded fingerprint were hashed when resolved, so there is nothing to verify.
        """
        recorded = (info.lineage or {}).get("fingerprint")
        if not recorded or not info.path:
            return
        actual = self._cached_fingerprint(Path(info.path))
        if actual != recorded:
            from kret.errors import ModelMismatchError

            raise ModelMismatchError(
                f"model {info.name} at {info.path}: {META_FILE} records fingerprint {recorded[:12]} but the "
                f"weights there hash to {actual[:12]}; the files changed after the model was built or "
                "registered — restore them, or register the folder as a new version"
            )

    # registry ------------------------------------------------------------------------------------
    def _version_dir(self, version: str) -> Path:
        if not version or "/" in version or version.startswith("."):
            return self.models_dir / "\0invalid"
        return self.models_dir / version

    def get(self, version: str) -> ModelInfo:
        path = self._version_dir(version)
        if not path.is_dir():
            raise RegistryError(f"no model version {version!r} in {self.models_dir} (see `kret models list`)")
        meta = _read_meta(path)
        if not meta.get("fingerprint"):
            meta["fingerprint"] = fingerprint_dir(path)
            meta.setdefault("name", version)
            write_json_atomic(path / META_FILE, meta)
        return ModelInfo(
            name=version, path=str(path), fingerprint=meta["fingerprint"], lineage=meta, source=version
        )

    def list(self) -> list[ModelInfo]:
        if not self.models_dir.is_dir():
            return []
        out = []
        for p in sorted(self.models_dir.iterdir()):
            if p.is_dir() and not p.name.startswith(".") and (p / "modules.json").is_file():
                out.append(self.get(p.name))
        return out

    def default_version(self) -> str | None:
        pointer = self.models_dir / DEFAULT_POINTER
        if pointer.is_file():
            version = pointer.read_text().strip()
            return version or None
        return None

    def set_default(self, version: str) -> ModelInfo:
        info = self.get(version)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.models_dir / f".{DEFAULT_POINTER}.tmp"
        tmp.write_text(version + "\n")
        os.replace(tmp, self.models_dir / DEFAULT_POINTER)
        return info

    def register(
        self,
        src_dir: Path,
        *,
        base: ModelInfo | None,
        lineage: dict[str, Any],
        prefix: str = "kret",
        export: bool = True,
    ) -> ModelInfo:
        """Move a freshly trained model folder into the registry as a new version with its lineage, and
        export it to OpenVINO IR (``<version>/openvino/``; see ``kret.engine.runtimes.export``)."""
        self.models_dir.mkdir(parents=True, exist_ok=True)
        version = f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"
        n = 1
        while self._version_dir(version).exists():
            n += 1
            version = f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{n}"
        meta = dict(lineage)
        meta.update(
            name=version,
            version=version,
            fingerprint=fingerprint_dir(src_dir),
            created_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            base=({"name": base.name, "fingerprint": base.fingerprint} if base else None),
        )
        meta.setdefault("evals", [])
        write_json_atomic(src_dir / META_FILE, meta)
        try:
            os.replace(src_dir, self._version_dir(version))
        except OSError:  # another filesystem (EXDEV): copy, then remove the source
            shutil.move(str(src_dir), str(self._version_dir(version)))
        if export:
            # Trained versions are served by OpenVINO like the default model, without a manual step.
            from kret.engine.runtimes.export import export_registered

            self.update_lineage(version, openvino_export=export_registered(self.get(version)))
        return self.get(version)

    def update_lineage(self, version: str, **fields: Any) -> None:
        info = self.get(version)
        meta = dict(info.lineage)
        for key, value in fields.items():
            if key == "evals":
                meta.setdefault("evals", []).extend(value)
            else:
                meta[key] = value
        write_json_atomic(Path(info.path) / META_FILE, meta)

    def remove(self, version: str, *, used_by: list[str], force: bool = False) -> None:
        info = self.get(version)
        if used_by and not force:
            raise RegistryError(
                f"model {version} is used by collection(s) {', '.join(used_by)}; remove those first or pass --force"
            )
        if self.default_version() == version:
            (self.models_dir / DEFAULT_POINTER).unlink()
        shutil.rmtree(info.path)


def _looks_like_hub_name(spec: str) -> bool:
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not spec.startswith((".", "/", "~"))
