"""Settings precedence, read directly: keyword arguments > KRET_* environment > kret.toml > defaults.

The conftest fixture clears every KRET_* variable and points KRET_CONFIG at a missing file, so each test
states exactly which sources it sets.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kret.errors import ConfigError, UserInputError
from kret.settings import Settings, load_settings


@pytest.fixture
def toml(tmp_path, monkeypatch):
    """Write a kret.toml and point KRET_CONFIG at it."""

    def write(text: str) -> Path:
        path = tmp_path / "kret.toml"
        path.write_text(text, encoding="utf-8")
        monkeypatch.setenv("KRET_CONFIG", str(path))
        return path

    return write


def test_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv("KRET_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    s = load_settings()
    assert s.home == tmp_path / "xdg" / "kret"
    assert (s.model, s.collection, s.search_mode, s.fusion) == ("default", "default", "hybrid", None)
    assert (s.prefetch_k, s.rrf_k, s.chunk_overlap, s.chunk_tokens) == (100, 60, 64, None)
    assert s.qdrant_url is None and not s.server_mode
    assert (s.models_dir, s.collections_dir, s.cache_dir) == (
        s.home / "models",
        s.home / "collections",
        s.home / "cache",
    )


def test_toml_overrides_defaults(toml):
    toml('collection = "fromtoml"\nprefetch_k = 7\nfusion = "rrf"\n')
    s = load_settings()
    assert (s.collection, s.prefetch_k, s.fusion) == ("fromtoml", 7, "rrf")
    assert s.rrf_k == 60  # untouched fields keep their defaults


def test_env_overrides_toml(toml, monkeypatch):
    toml('collection = "fromtoml"\nprefetch_k = 7\n')
    monkeypatch.setenv("KRET_PREFETCH_K", "8")
    s = load_settings()
    assert (s.collection, s.prefetch_k) == ("fromtoml", 8)


def test_keyword_arguments_override_env_and_toml(toml, monkeypatch):
    toml('collection = "fromtoml"\nprefetch_k = 7\n')
    monkeypatch.setenv("KRET_PREFETCH_K", "8")
    monkeypatch.setenv("KRET_COLLECTION", "fromenv")
    s = load_settings(prefetch_k=9, collection="fromkw")
    assert (s.collection, s.prefetch_k) == ("fromkw", 9)
    assert Settings(prefetch_k=9).prefetch_k == 9


def test_unset_flags_do_not_mask_lower_sources(monkeypatch):
    """The CLI passes None for every flag the user did not give: that must not override env or toml."""
    monkeypatch.setenv("KRET_PREFETCH_K", "8")
    assert load_settings(prefetch_k=None, collection=None).prefetch_k == 8


def test_config_file_defaults_to_kret_toml_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("KRET_CONFIG")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kret.toml").write_text("rrf_k = 5\n", encoding="utf-8")
    assert load_settings().rrf_k == 5


def test_a_missing_config_file_is_not_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KRET_CONFIG", str(tmp_path / "absent.toml"))
    assert load_settings().rrf_k == 60


@pytest.mark.parametrize(
    ("source", "field"),
    [("env", "prefetch_k"), ("toml", "prefetch_k"), ("kwarg", "prefetch_k"), ("toml", "collection")],
)
def test_invalid_values_are_one_line_config_errors_naming_the_field(source, field, toml, monkeypatch):
    bad = {"prefetch_k": "0", "collection": "no spaces/allowed"}[field]
    kwargs = {}
    if source == "env":
        monkeypatch.setenv(f"KRET_{field.upper()}", bad)
    elif source == "toml":
        toml(f'{field} = "{bad}"\n' if field == "collection" else f"{field} = {bad}\n")
    else:
        kwargs[field] = int(bad)
    with pytest.raises(ConfigError) as err:
        load_settings(**kwargs)
    assert isinstance(err.value, UserInputError)
    message = str(err.value)
    assert field in message and "\n" not in message


def test_api_key_is_not_printed(monkeypatch):
    monkeypatch.setenv("KRET_QDRANT_URL", "http://qdrant:6333")
    monkeypatch.setenv("KRET_QDRANT_API_KEY", "s3cret")
    s = load_settings()
    assert s.server_mode and s.qdrant_api_key.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s) and "s3cret" not in str(s)
