"""The model registry on its own: versions, the default pointer, lineage, removal and spec resolution.

Uses the tiny random model (with the real tokenizer) as the "trained" folder each version is made from;
nothing here builds the real default model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kret.engine import models as models_mod
from kret.engine.models import META_FILE, ModelRegistry, fingerprint_dir
from kret.errors import ModelError, RegistryError


@pytest.fixture
def registry(fast_tmp) -> ModelRegistry:
    return ModelRegistry(fast_tmp / "home" / "models")


@pytest.fixture
def trained(tiny_model_dir, fast_tmp):
    """A fresh copy of the tiny model, as a training run would leave it (register moves it)."""
    count = iter(range(100))

    def make() -> Path:
        dst = fast_tmp / f"run-{next(count)}"
        shutil.copytree(tiny_model_dir, dst)
        return dst

    return make


def test_an_empty_registry(registry):
    assert registry.list() == [] and registry.default_version() is None
    with pytest.raises(ModelError, match="models pull"):
        registry.resolve("default", build_default=False)
    with pytest.raises(RegistryError, match="no model version"):
        registry.get("pt-20260101-000000")


def test_register_moves_the_folder_in_and_records_lineage(registry, trained, tiny_model_dir):
    base = registry.resolve(str(tiny_model_dir))
    src = trained()
    info = registry.register(src, base=base, lineage={"kind": "pretrain", "steps": 3}, prefix="pt")
    assert not src.exists()
    assert info.name.startswith("pt-") and Path(info.path) == registry.models_dir / info.name
    assert info.fingerprint == fingerprint_dir(tiny_model_dir) == base.fingerprint  # content, not place
    lin = info.lineage
    assert lin["kind"] == "pretrain" and lin["steps"] == 3 and lin["version"] == info.name
    assert lin["base"] == {"name": base.name, "fingerprint": base.fingerprint}
    assert lin["evals"] == []
    on_disk = json.loads((Path(info.path) / META_FILE).read_text(encoding="utf-8"))
    assert on_disk["fingerprint"] == info.fingerprint
    assert [m.name for m in registry.list()] == [info.name]


def test_versions_registered_in_the_same_second_get_distinct_names(registry, trained, monkeypatch):
    monkeypatch.setattr(models_mod.time, "strftime", lambda fmt, *a: "20260101-000000" if "H" in fmt else "x")
    names = [registry.register(trained(), base=None, lineage={}, prefix="ft").name for _ in range(3)]
    assert names == ["ft-20260101-000000", "ft-20260101-000000-2", "ft-20260101-000000-3"]


def test_lineage_chains_through_parents(registry, trained):
    a = registry.register(trained(), base=None, lineage={"kind": "pretrain"}, prefix="pt")
    b = registry.register(trained(), base=a, lineage={"kind": "finetune", "parent": a.name}, prefix="ft")
    assert a.lineage["base"] is None
    assert b.lineage["base"] == {"name": a.name, "fingerprint": a.fingerprint}
    assert registry.get(b.lineage["parent"]).fingerprint == a.fingerprint


def test_set_default_and_resolve(registry, trained):
    a = registry.register(trained(), base=None, lineage={}, prefix="pt")
    b = registry.register(trained(), base=None, lineage={}, prefix="ft")
    registry.set_default(b.name)
    assert registry.default_version() == b.name
    assert registry.resolve("default").name == b.name
    assert registry.resolve(a.name).name == a.name  # a version by name
    with pytest.raises(RegistryError):
        registry.set_default("nope")
    assert registry.default_version() == b.name  # a failed switch leaves the pointer alone


def test_update_lineage_appends_evals_and_replaces_the_rest(registry, trained):
    v = registry.register(trained(), base=None, lineage={"note": "old"}, prefix="pt")
    registry.update_lineage(v.name, evals=[{"ndcg@10": 0.5}], note="new")
    registry.update_lineage(v.name, evals=[{"ndcg@10": 0.6}])
    lin = registry.get(v.name).lineage
    assert lin["evals"] == [{"ndcg@10": 0.5}, {"ndcg@10": 0.6}] and lin["note"] == "new"


def test_remove_refuses_a_version_in_use_unless_forced(registry, trained):
    v = registry.register(trained(), base=None, lineage={}, prefix="pt")
    registry.set_default(v.name)
    with pytest.raises(RegistryError, match="docs"):
        registry.remove(v.name, used_by=["docs"])
    assert registry.get(v.name)
    registry.remove(v.name, used_by=["docs"], force=True)
    assert registry.list() == [] and registry.default_version() is None
    with pytest.raises(RegistryError):
        registry.remove(v.name, used_by=[])


def test_list_skips_hidden_and_incomplete_folders(registry, trained):
    v = registry.register(trained(), base=None, lineage={}, prefix="pt")
    (registry.models_dir / ".pt-tmp-123").mkdir()
    (registry.models_dir / "half-written").mkdir()
    assert [m.name for m in registry.list()] == [v.name]


@pytest.mark.parametrize("spec", ["../escape", "a/b/c", ".hidden"])
def test_version_names_cannot_leave_the_registry(registry, spec):
    with pytest.raises(RegistryError):
        registry.get(spec)


def test_resolve_a_folder_and_a_missing_folder(registry, tiny_model_dir, tmp_path):
    info = registry.resolve(str(tiny_model_dir))
    assert info.path == str(tiny_model_dir.resolve()) and info.source == info.path
    assert info.fingerprint == fingerprint_dir(tiny_model_dir)
    assert registry.resolve(str(tiny_model_dir)).fingerprint == info.fingerprint  # cached the second time
    with pytest.raises(ModelError, match="does not exist"):
        registry.resolve(str(tmp_path / "no-such-model"))
    with pytest.raises(ModelError, match="does not look like"):
        fingerprint_dir(tmp_path)
