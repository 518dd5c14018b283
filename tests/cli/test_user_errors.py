"""User-side problems are one line and an exit code, and bad values are refused where they enter (issue 13,
items 8, 10 and 11). Most tests need no model: settings, options, the store's files and the registry."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from kret.errors import ConfigError, ModelError, RegistryError, StoreError, UserInputError
from kret.settings import load_settings

# ---------------------------------------------------------------------------------------------- settings


def test_malformed_kret_toml_is_one_line(tmp_path, monkeypatch):
    from cli_runner import invoke

    bad = tmp_path / "kret.toml"
    bad.write_text('fusion = "rrf\n')
    monkeypatch.setenv("KRET_CONFIG", str(bad))
    with pytest.raises(ConfigError, match="cannot parse .*kret.toml"):
        load_settings()
    r = invoke(["collections", "list"])
    assert r.exit_code == 2 and r.stderr.startswith("error: cannot parse"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_unknown_setting_in_toml_is_an_error(tmp_path, monkeypatch):
    cfg = tmp_path / "kret.toml"
    cfg.write_text('fusoin = "rrf"\n')
    monkeypatch.setenv("KRET_CONFIG", str(cfg))
    with pytest.raises(ConfigError, match=r"fusoin: unknown setting \(did you mean fusion\?\)"):
        load_settings()


def test_unknown_kret_env_variable_is_an_error(monkeypatch):
    monkeypatch.setenv("KRET_FUSOIN", "rrf")
    with pytest.raises(ConfigError, match="KRET_FUSOIN.*did you mean KRET_FUSION"):
        load_settings()


def test_non_setting_env_names_stay_allowed(monkeypatch, tmp_path):
    """KRET_CONFIG (the config file), KRET_DOCS_DIR (docker compose), the tests' and benchmarks' own names."""
    monkeypatch.setenv("KRET_TEST_CACHE", str(tmp_path))
    monkeypatch.setenv("KRET_BENCH_DATA", str(tmp_path))
    monkeypatch.setenv("KRET_DOCS_DIR", str(tmp_path))
    cfg = tmp_path / "kret.toml"
    cfg.write_text("prefetch_k = 7\n")
    monkeypatch.setenv("KRET_CONFIG", str(cfg))
    assert load_settings().prefetch_k == 7


def test_empty_kret_home_is_an_error_not_the_current_folder(monkeypatch):
    monkeypatch.setenv("KRET_HOME", "")
    with pytest.raises(ConfigError, match="home: is empty"):
        load_settings()
    with pytest.raises(ConfigError, match="home: is empty"):
        load_settings(home="  ")


def test_unknown_device_is_refused_by_settings(monkeypatch):
    monkeypatch.setenv("KRET_DEVICE", "tpu")
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        load_settings()
    monkeypatch.setenv("KRET_DEVICE", "cuda:1")
    assert load_settings().device == "cuda:1"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "0"])
def test_weights_must_be_positive_and_finite_in_settings(monkeypatch, value):
    monkeypatch.setenv("KRET_DENSE_WEIGHT", value)
    with pytest.raises(ConfigError, match="dense_weight"):
        load_settings()


def test_kiwi_workers_come_from_settings(monkeypatch):
    import kiwipiepy

    from kret import korean
    from kret.api import Kret

    seen: list[int] = []

    class FakeKiwi:
        def __init__(self, num_workers: int = 0) -> None:
            seen.append(num_workers)

    monkeypatch.setattr(kiwipiepy, "Kiwi", FakeKiwi)
    monkeypatch.setattr(korean, "_workers", None)
    monkeypatch.setenv("KRET_KIWI_WORKERS", "3")
    korean._build.cache_clear()
    try:
        assert load_settings().kiwi_workers == 3
        Kret(kiwi_workers=2)  # a keyword beats the environment, as for every setting
        korean._build()
        assert seen == [2]
    finally:
        korean._build.cache_clear()
    monkeypatch.setenv("KRET_KIWI_WORKERS", "many")
    with pytest.raises(ConfigError, match="kiwi_workers"):
        load_settings()


# ---------------------------------------------------------------------------------------------- search


def test_search_options_reject_unknown_keys():
    from kret.wiring import search_options

    s = load_settings()
    with pytest.raises(TypeError, match="fusoin"):
        search_options(s, fusoin="rrf")
    assert search_options(s, fusion="rrf").fusion == "rrf"


@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0, 0.0])
def test_search_options_weights_checked(value):
    from kret.wiring import search_options

    with pytest.raises(UserInputError, match="dense_weight"):
        search_options(load_settings(), fusion="rrf", dense_weight=value)


@pytest.mark.parametrize("flag", ["nan", "inf", "-2"])
def test_cli_refuses_bad_weight_before_anything_else(flag):
    from cli_runner import invoke

    r = invoke(["search", "질문", "--fusion", "rrf", "--dense-weight", flag, "--json"])
    assert r.exit_code == 2, (r.exit_code, r.stderr)
    assert "dense_weight" in r.stderr and "NaN" not in r.stdout and r.stdout == ""


def test_filter_types_and_globs_are_checked():
    from kret.engine.search import _check_filter
    from kret.engine.types import SearchFilter

    with pytest.raises(UserInputError, match="unknown file type 'pdff'.*md"):
        _check_filter(SearchFilter(source_types=["pdff"]))
    with pytest.raises(UserInputError, match="malformed path glob"):
        _check_filter(SearchFilter(path_glob="docs/[abc*.md"))
    with pytest.raises(UserInputError, match="empty"):
        _check_filter(SearchFilter(path_glob=" "))
    for ok in (
        SearchFilter(source_types=["MD", ".pdf", "markdown", "htm"]),
        SearchFilter(path_glob="[[]x]*"),
    ):
        _check_filter(ok)


# ---------------------------------------------------------------------------------------------- store


def _small_collection(home: Path, *, chunks: int = 3):
    """A real Qdrant Edge collection with 4-dimensional vectors, written without any model."""
    from kret.engine.edge_store import EdgeBackend
    from kret.engine.store import DocumentWrite
    from kret.engine.types import StoredPoint

    backend = EdgeBackend(home / "collections")
    version, store = backend.new_version("docs")
    manifest = {
        "model": {"name": "m", "fingerprint": "f" * 64, "source": "m"},
        "dimension": 4,
        "chunking": {"chunk_tokens": 100, "overlap_tokens": 10},
        "prompts": {},
        "sparse": {"k1": 1.2, "b": 0.75},
    }
    store.create(4, manifest)
    points = [
        StoredPoint(f"00000000-0000-0000-0000-00000000000{i}", [1.0, 0.5, 0.25, float(i)], None,
                    {"kind": "chunk", "doc_id": "a", "chunk_index": i, "text": f"t{i}", "path": "/a"})
        for i in range(chunks)
    ]  # fmt: skip
    store.write_documents([DocumentWrite("a", "h", "/a", points)])
    store.close()
    backend.activate("docs", version)
    return backend, backend.root / "docs" / version


def test_binary_current_pointer_is_a_store_error(home):
    from cli_runner import invoke

    from kret.engine.edge_store import EdgeBackend

    folder = home / "collections" / "docs"
    folder.mkdir(parents=True)
    (folder / "CURRENT").write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(StoreError, match="damaged.*CURRENT"):
        EdgeBackend(home / "collections").live_version("docs")
    r = invoke(["collections", "show", "docs"])
    assert r.exit_code == StoreError.exit_code and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_missing_id_tracker_is_named_not_called_foreign(home):
    from kret.engine.collection import open_collection

    backend, shard = _small_collection(home)
    for f in shard.glob("segments/*/mutable_id_tracker.mappings"):
        f.unlink()
    with pytest.raises(StoreError) as err:
        open_collection(backend, "docs")
    assert "mutable_id_tracker.mappings" in str(err.value) and "not created by kret" not in str(err.value)


def test_collections_show_reads_vectors_back(home):
    from cli_runner import invoke

    _backend, shard = _small_collection(home)
    r = invoke(["collections", "show", "docs"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["vectors"] == {"ok": True, "checked": 3}
    [vectors] = shard.glob("segments/*/vector_storage-dense/vectors/chunk_0.mmap")
    with vectors.open("r+b") as fh:
        fh.write(b"\xff" * 64)  # the stored floats become NaN; counts and payloads are untouched
    r = invoke(["collections", "show", "docs"])
    assert r.exit_code == StoreError.exit_code, r.stderr
    assert json.loads(r.stdout)["vectors"]["ok"] is False
    assert "damaged" in r.stderr and "non-finite" in r.stderr


# ---------------------------------------------------------------------------------------------- models


class _Coll:
    name = "docs"
    manifest = {"model": {"name": "gone", "fingerprint": "0" * 64, "source": "/no/such/model"}}


@pytest.mark.parametrize("error", [RegistryError("registry broken"), ModelError("weights unreadable")])
def test_model_of_keeps_the_real_error_type(monkeypatch, error):
    from kret.api import Kret

    kr = Kret()

    def fail(*_a, **_k):
        raise error

    monkeypatch.setattr(kr.registry, "resolve", fail)
    with pytest.raises(type(error), match="collection 'docs' was built with model gone") as caught:
        kr._model_of(_Coll(), None)
    assert type(caught.value) is type(error)
    monkeypatch.setattr(kr.registry, "resolve", lambda *_a, **_k: 1 / 0)
    with pytest.raises(ZeroDivisionError):  # a bug stays a bug, with its traceback
        kr._model_of(_Coll(), None)


@pytest.fixture
def no_network(monkeypatch):
    """Any socket connection fails the test; hub downloads are recorded instead of attempted."""
    import socket

    import huggingface_hub

    def refuse(*_a, **_k):
        raise AssertionError("kret tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    calls: list[dict] = []
    real = huggingface_hub.snapshot_download

    def fake(repo_id, **kwargs):
        calls.append({"repo_id": repo_id, **kwargs})
        if kwargs.get("local_files_only"):
            return real(repo_id=repo_id, local_files_only=True)
        raise AssertionError(f"download of {repo_id!r} attempted")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return calls


@pytest.mark.parametrize("name", ["e5small", "intfloat/e5-smal"])
def test_unknown_model_name_never_downloads(no_network, name):
    from kret.api import Kret

    with pytest.raises(ModelError, match="not a registry version, a folder, or a cached hub model"):
        Kret().resolve_model(name)
    assert all(call.get("local_files_only") for call in no_network)


def test_downloads_only_when_allowed(no_network, monkeypatch, tiny_model_dir, tmp_path):
    import huggingface_hub
    from cli_runner import invoke

    from kret.api import Kret

    def fetched(repo_id, **kwargs):
        no_network.append({"repo_id": repo_id, **kwargs})
        if kwargs.get("local_files_only"):
            raise FileNotFoundError("not cached")
        return str(tiny_model_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fetched)
    assert Kret(allow_downloads=True).resolve_model("someone/model").source == "someone/model"
    assert no_network[-1] == {"repo_id": "someone/model"}
    (tmp_path / "a.txt").write_text("문서")
    r = invoke(["index", str(tmp_path / "a.txt"), "-m", "some1/model", "--json"])
    assert r.exit_code == ModelError.exit_code and "--allow-downloads" in r.stderr
    monkeypatch.setenv("KRET_ALLOW_DOWNLOADS", "1")
    assert Kret().registry.allow_downloads is True
    monkeypatch.delenv("KRET_ALLOW_DOWNLOADS")
    r = invoke(["--allow-downloads", "index", str(tmp_path / "a.txt"), "-m", "some1/model", "--json"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["added"] == 1 and no_network[-1] == {"repo_id": "some1/model"}


def test_ctx_exit_code_reaches_the_shell(monkeypatch):
    """`kret index` ends an interrupted run with ``ctx.exit(130)``; run_cli used to drop that code (exit 0)."""
    import click

    from kret.cli.common import run_cli

    @click.command()
    @click.pass_context
    def interrupted(ctx):
        ctx.exit(130)

    monkeypatch.setattr("sys.argv", ["kret"])
    with pytest.raises(SystemExit) as caught:
        run_cli(interrupted)
    assert caught.value.code == 130
