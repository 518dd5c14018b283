"""Issue 13: nothing escapes KRET_HOME, no silent loss under concurrency or a full disk, fingerprints that
mean what they say. Each defect of the issue has a test here that failed on the code before the fix.

Races use real child processes where the race is between processes (file locks are per open file, so two
``Kret`` objects in one process also stand in for two processes where noted).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from kret.errors import (
    CollectionNameError,
    DiskSpaceError,
    IndexInUseError,
    ModelMismatchError,
    UserInputError,
)

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import reliability  # noqa: E402  (bench/reliability.py: corpus, child env, inspection, race driver)

BAD_NAMES = [
    "../x",
    "../../x",
    "/abs/dir",
    "a/b",
    "..",
    ".",
    "",
    "x/../../y",
    "-x",
    "a b",
    "a\0b",
    "a\nb",
    "x" * 200,
]


@pytest.fixture
def corpus(fast_tmp) -> Path:
    folder = fast_tmp / "corpus"
    reliability.make_corpus(folder, 3, seed=7)
    return folder


def kret_cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return reliability.run(home, *args, timeout=300)


# 1. collection names ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n in BAD_NAMES if n])  # "" means "the default collection" there
def test_bad_names_are_refused_by_every_api_entry(tiny_kret, home, corpus, name) -> None:
    outside = home.parent / "x"
    with pytest.raises(CollectionNameError):
        tiny_kret.index([corpus], collection=name)
    for call in (
        lambda: tiny_kret.collection_info(name),
        lambda: tiny_kret.remove_collection(name),
        lambda: tiny_kret.gc(name),
        lambda: tiny_kret.search("질문", collection=name),
    ):
        with pytest.raises(CollectionNameError):
            call()
    assert not outside.exists()


def test_index_with_dotdot_name_creates_nothing_outside_home(tiny_kret, home, corpus) -> None:
    """The issue's `kret index DIR -c ../../x` created a collection outside KRET_HOME."""
    before = set(home.parent.iterdir())
    with pytest.raises(UserInputError):
        tiny_kret.index([corpus], collection="../../escaped")
    assert set(home.parent.iterdir()) - before <= {home}
    assert not (home.parent.parent / "escaped").exists()


def test_rm_never_deletes_a_folder_outside_home(tiny_kret, fast_tmp) -> None:
    """The issue's `kret collections rm /some/dir --yes` deleted a folder holding CURRENT and other files."""
    victim = fast_tmp / "victim"
    (victim / "v0001").mkdir(parents=True)
    (victim / "CURRENT").write_text("v0001\n")
    (victim / "thesis.txt").write_text("not kret's")
    with pytest.raises(UserInputError):
        tiny_kret.remove_collection(str(victim))
    assert (victim / "thesis.txt").is_file() and (victim / "v0001").is_dir()


def test_gc_never_deletes_a_version_folder_outside_home(tiny_kret, fast_tmp) -> None:
    """The issue's `kret gc -c /some/dir` deleted a v0001 folder outside KRET_HOME."""
    victim = fast_tmp / "victim"
    (victim / "v0001").mkdir(parents=True)
    (victim / "v0001" / "data.bin").write_bytes(b"x")
    with pytest.raises(UserInputError):
        tiny_kret.gc(str(victim))
    assert (victim / "v0001" / "data.bin").is_file()


def test_rm_refuses_symlinked_or_foreign_collection_folders(tiny_kret, home, fast_tmp, corpus) -> None:
    tiny_kret.index([corpus], collection="real")
    outside = fast_tmp / "elsewhere"
    (outside / "v0001").mkdir(parents=True)
    (outside / "CURRENT").write_text("v0001\n")
    (home / "collections" / "linked").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UserInputError, match="not a folder kret made"):
        tiny_kret.remove_collection("linked")
    assert (outside / "v0001").is_dir()
    (home / "collections" / "real" / "notes.txt").write_text("mine")
    with pytest.raises(UserInputError, match="notes.txt"):
        tiny_kret.remove_collection("real")
    (home / "collections" / "real" / "notes.txt").unlink()
    tiny_kret.remove_collection("real")
    assert not (home / "collections" / "real").exists()


def test_gc_removes_a_version_with_edge_optimizer_leftovers(tiny_kret, home, corpus) -> None:
    """Qdrant Edge's optimizer builds segments in ``temp_segments`` (left behind, empty or holding a
    ``segment_builder_*`` after an interrupted build); gc refused such a version as "not made by Qdrant
    Edge", and `kret eval` failed on it after moving a collection to a new lexical rule."""
    tiny_kret.index([corpus], collection="c")
    tiny_kret.reindex("c", lexical=True)
    old = home / "collections" / "c" / "v0001"
    (old / "temp_segments" / "segment_builder_AbC123").mkdir(parents=True)
    assert tiny_kret.gc("c") == ["c/v0001"]
    assert not old.exists()


def test_cli_bad_name_is_one_line_exit_2(home, tiny_model_dir, corpus) -> None:
    r = kret_cli(home, "index", str(corpus), "-c", "../x", "-m", str(tiny_model_dir))
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "not a plain name" in lines[0]
    assert not (home.parent / "x").exists()


def test_settings_and_backend_share_one_rule() -> None:
    from kret.engine.names import collection_name_problem
    from kret.errors import ConfigError
    from kret.settings import load_settings

    for name in ("docs", "eval-korquad-dev-f3d27ffd-df7b7ed3-cauto", "A_1", "_x"):
        assert collection_name_problem(name) is None
        assert load_settings(collection=name).collection == name
    for name in ("../x", "a/b", "-x", "한국어"):
        assert collection_name_problem(name)
        with pytest.raises(ConfigError):
            load_settings(collection=name)


# 2. locks, races, orphans ----------------------------------------------------------------------------
def test_second_writer_gets_in_use(home, tiny_model_dir, corpus) -> None:
    """Two writers of one collection (two Kret objects hold separate lock files, like two processes)."""
    from kret.api import Kret

    a = Kret(home=home, model=str(tiny_model_dir))
    b = Kret(home=home, model=str(tiny_model_dir))
    with a.backend.writer("c"), pytest.raises(IndexInUseError) as err:
        b.index([corpus], collection="c")  # a second creator
    assert err.value.exit_code == 6 and b.backend.stored_names() == []
    a.index([corpus], collection="c")
    with a.backend.writer("c"):
        for call in (lambda: b.index([corpus], collection="c"), lambda: b.remove_collection("c")):
            with pytest.raises(IndexInUseError):
                call()
    assert b.collection_info("c")["documents"] == 3


def test_gc_skips_a_version_another_process_is_building(home, tiny_model_dir, corpus) -> None:
    """The issue's `kret gc` during `kret reindex` deleted the version being built."""
    from kret.api import Kret

    builder = Kret(home=home, model=str(tiny_model_dir))
    builder.index([corpus], collection="c")
    version, store = builder.backend.new_version("c")
    store.create(8, {"model": {"name": "m", "fingerprint": "f"}})
    other = Kret(home=home, model=str(tiny_model_dir))
    skipped: list[str] = []
    assert other.gc("c", skipped=skipped) == []
    assert skipped and version in skipped[0]
    assert version in other.backend.versions("c")
    assert other.version_report("c")["building"] == [version]
    store.close()
    builder.backend.activate("c", version)
    assert other.backend.live_version("c") == version
    assert other.gc("c") == ["c/v0001"]


def _crash_after_new_version(home: Path, name: str) -> None:
    """A child that creates a version and dies (os._exit) before switching to it."""
    code = (
        "import os\nfrom pathlib import Path\nfrom kret.engine.edge_store import EdgeBackend\n"
        f"b = EdgeBackend(Path({str(home / 'collections')!r}))\n"
        f"v, s = b.new_version({name!r})\ns.create(8, {{'model': {{'name': 'm', 'fingerprint': 'f'}}}})\n"
        "os._exit(9)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 9, r.stderr


def test_orphans_are_listed_with_the_command_and_gc_removes_them(tiny_kret, home, corpus) -> None:
    tiny_kret.index([corpus], collection="c")
    _crash_after_new_version(home, "c")  # orphan next to a live version
    _crash_after_new_version(home, "fresh")  # orphan with no live version (first index crashed)
    infos = {i["name"]: i for i in tiny_kret.collections()}
    assert infos["c"]["orphans"] == ["v0002"] and infos["c"]["remove_with"] == "kret gc -c c"
    assert infos["fresh"]["version"] is None and infos["fresh"]["orphans"] == ["v0001"]
    assert tiny_kret.collection_info("c")["orphans"] == ["v0002"]
    assert sorted(tiny_kret.gc()) == ["c/v0002", "fresh/v0001"]
    assert tiny_kret.backend.versions("c") == ["v0001"] and tiny_kret.backend.versions("fresh") == []
    assert tiny_kret.search("문서", k=1, collection="c")


def test_cli_lists_orphans_with_the_gc_command(home, tiny_model_dir, corpus) -> None:
    assert kret_cli(home, "index", str(corpus), "-c", "c", "-m", str(tiny_model_dir)).returncode == 0
    _crash_after_new_version(home, "c")
    r = kret_cli(home, "collections", "list")
    assert r.returncode == 0 and "kret gc -c c" in r.stderr and "v0002" in r.stderr


def test_concurrent_create_loses_no_documents(fast_tmp, tiny_model_dir) -> None:
    """The issue's race: two `kret index` runs creating one collection both exited 0 and one run's
    documents were lost in an orphan. Both children are released together at file discovery."""
    a = reliability.make_corpus(fast_tmp / "a", 3, seed=1, tag="a")
    b = reliability.make_corpus(fast_tmp / "b", 3, seed=2, tag="b")
    home = fast_tmp / "race-home"
    results = reliability.race(home, str(tiny_model_dir), [fast_tmp / "a", fast_tmp / "b"], fast_tmp / "bar")
    codes = [r.returncode for r in results]
    assert all(c in (0, 6) for c in codes) and 0 in codes, [r.stderr[-300:] for r in results]
    assert not any(reliability.has_traceback(r.stderr) for r in results)
    state = reliability.inspect(home, reliability.NAME)
    for files, r in zip((a, b), results, strict=True):
        if r.returncode == 0:
            assert reliability.paths_of(files) <= state["complete"]
        else:
            assert "in use" in r.stderr
    assert state["orphans"] == 0 and state["versions"] == [state["live"]]


def test_gc_during_reindex_subprocess(fast_tmp, tiny_model_dir) -> None:
    row = reliability.scenario_gc_during_reindex(fast_tmp, str(tiny_model_dir), trials=1, docs=3)
    assert row.failures == 0, row.notes
    assert row.docs_lost == 0 and row.orphans_after_gc == 0


# 3. fingerprints --------------------------------------------------------------------------------------
def _registered_copy(src: Path, dst: Path) -> str:
    """A model folder with its fingerprint recorded in kret_model.json (as a registered version has)."""
    from kret.engine.models import META_FILE, fingerprint_dir

    shutil.copytree(src, dst)
    meta_path = dst / META_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    meta["fingerprint"] = fingerprint_dir(dst)
    meta["name"] = "tiny-registered"
    meta_path.write_text(json.dumps(meta))
    return meta["fingerprint"]


def _change_weights(folder: Path) -> None:
    from safetensors.numpy import load_file, save_file

    path = folder / "model.safetensors"
    tensors = load_file(str(path))
    key = sorted(tensors)[0]
    tensors[key] = tensors[key] + 0.5
    save_file(tensors, str(path), metadata={"format": "pt"})


def test_changed_weights_with_copied_metadata_are_refused(home, fast_tmp, tiny_model_dir, corpus) -> None:
    """The issue: a copy of the model with changed weights but the same kret_model.json was accepted for
    search and added documents to the collection."""
    from kret.api import Kret

    good = fast_tmp / "m-good"
    recorded = _registered_copy(tiny_model_dir, good)
    kr = Kret(home=home, model=str(good))
    kr.index([corpus], collection="c")
    bad = fast_tmp / "m-bad"
    shutil.copytree(good, bad)
    _change_weights(bad)

    with pytest.raises(ModelMismatchError) as err:
        Kret(home=home).search("문서", collection="c", model=str(bad))
    msg = str(err.value)
    assert recorded[:12] in msg and str(bad) in msg
    more = fast_tmp / "more"
    reliability.make_corpus(more, 1, seed=9, tag="m")
    with pytest.raises(ModelMismatchError):
        Kret(home=home, model=str(bad)).index([more], collection="new")
    # the original folder still works
    assert Kret(home=home).search("문서", collection="c", model=str(good))


def test_verification_is_cached_by_size_and_mtime(home, fast_tmp, tiny_model_dir, monkeypatch) -> None:
    from kret.engine import models
    from kret.engine.models import ModelRegistry

    good = fast_tmp / "m"
    _registered_copy(tiny_model_dir, good)
    reg = ModelRegistry(home / "models", home / "cache")
    info = reg.resolve(str(good))
    reg.verify(info)  # computes and caches

    def boom(path):
        raise AssertionError("re-hashed an unchanged model")

    monkeypatch.setattr(models, "fingerprint_dir", boom)
    reg.verify(info)  # warm: stat only
    monkeypatch.undo()
    _change_weights(good)  # size/mtime change -> a fresh hash, which now disagrees
    with pytest.raises(ModelMismatchError):
        reg.verify(info)


# 4. disk space ----------------------------------------------------------------------------------------
def test_threshold_logic() -> None:
    from kret.engine import diskspace as ds
    from kret.engine.types import SparseVec, StoredPoint

    assert ds.required_for_new_version() == ds.SHARD_PREALLOC_BYTES + ds.HEADROOM_BYTES
    assert ds.required_for_batch(0, 0) == ds.HEADROOM_BYTES
    assert (
        ds.required_for_batch(10 * ds.MiB, 1000) == 10 * ds.MiB + ds.BATCH_FACTOR * 1000 + ds.HEADROOM_BYTES
    )
    assert ds.required_for_finalize(5, 7) == 12 + ds.HEADROOM_BYTES
    assert ds.required_for_open(3) == 3 + ds.WAL_SEGMENT_BYTES
    p = StoredPoint("id", [0.0] * 384, SparseVec([1, 2], [0.5, 0.5]), {"text": "가" * 100})
    size = ds.batch_bytes([p])
    assert 384 * 4 + 16 + 300 <= size <= 384 * 4 + 16 + 300 + 200  # vectors + UTF-8 payload + bookkeeping
    assert ds.batch_bytes([p, p]) == 2 * size
    ds.ensure_free(Path("/"), 100, "x", free=100)
    with pytest.raises(DiskSpaceError) as err:
        ds.ensure_free(Path("/"), 101 * ds.MiB, "write 3 document(s)", free=ds.MiB)
    assert err.value.exit_code == 9 and "1 MiB free" in str(err.value) and "101 MiB needed" in str(err.value)


def test_shard_usage_counts_sparse_preallocation(tmp_path) -> None:
    from kret.engine.diskspace import shard_usage

    (tmp_path / "a").write_bytes(b"x" * 8192)
    with (tmp_path / "sparse").open("wb") as fh:
        fh.truncate(32 << 20)
    allocated, unbacked = shard_usage(tmp_path)
    assert allocated >= 8192 and unbacked >= (32 << 20) - 8192


@pytest.fixture
def small_tmpfs(tmp_path):
    """Mount a tmpfs of the requested size (root only); skips with the reason where mounting is refused."""
    mounted: list[Path] = []

    def make(size_mb: int) -> Path:
        target = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
        target.mkdir()
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(target)],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({(r.stderr or r.stdout).strip() or 'mount failed'})")
        mounted.append(target)
        return target

    yield make
    for target in mounted:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def test_full_disk_refuses_a_new_collection_without_orphan(small_tmpfs, tiny_model_dir, corpus) -> None:
    home = small_tmpfs(64) / "home"
    r = kret_cli(home, "index", str(corpus), "-c", "c", "-m", str(tiny_model_dir))
    assert r.returncode == 9, (r.returncode, r.stderr[-500:])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "not enough free disk space" in lines[0]
    assert reliability.inspect(home, "c")["versions"] == []


def test_full_disk_mid_index_keeps_the_previous_state(small_tmpfs, tiny_model_dir, corpus, fast_tmp) -> None:
    """The issue: `kret index` into a full filesystem died with SIGBUS (exit 135), no message."""
    mount = small_tmpfs(400)
    home = mount / "home"
    assert kret_cli(home, "index", str(corpus), "-c", "c", "-m", str(tiny_model_dir)).returncode == 0
    before = reliability.inspect(home, "c")
    st = os.statvfs(mount)
    ballast = st.f_bavail * st.f_frsize - (2 << 20)
    subprocess.run(["fallocate", "-l", str(ballast), str(mount / "ballast")], check=True)
    more = fast_tmp / "more"
    reliability.make_corpus(more, 5, seed=11, tag="m")
    r = kret_cli(home, "index", str(more), "-c", "c", "-m", str(tiny_model_dir))
    assert r.returncode == 9, (r.returncode, r.stderr[-500:])
    assert "not enough free disk space" in r.stderr and not reliability.has_traceback(r.stderr)
    # still full: opening the collection here is refused too, with the same line (it used to be a SIGBUS)
    from kret.api import Kret

    with pytest.raises(DiskSpaceError):
        Kret(home=home).search("문서", collection="c")
    (mount / "ballast").unlink()
    after = reliability.inspect(home, "c")
    assert (
        after["live"] == before["live"] and after["complete"] == before["complete"] and not after["partial"]
    )
    assert after["orphans"] == 0
    assert kret_cli(home, "index", str(more), "-c", "c", "-m", str(tiny_model_dir)).returncode == 0


# 5. the fast variant of bench/reliability.py -----------------------------------------------------------
def test_reliability_kill_during_index(fast_tmp, tiny_model_dir) -> None:
    import random

    row = reliability.scenario_index_kills(
        fast_tmp, str(tiny_model_dir), trials=2, docs=4, rng=random.Random(1)
    )
    assert row.failures == 0, row.notes
    assert row.docs_lost == 0 and row.orphans_after_gc == 0


def test_reliability_adversarial_cli(fast_tmp, tiny_model_dir) -> None:
    row = reliability.scenario_adversarial(fast_tmp, str(tiny_model_dir), names=("../x", "{outside}"))
    assert row.trials == 8 and row.failures == 0, row.notes


def test_one_searcher_shared_by_threads_answers_each_query_with_its_own_hits(tiny_kret) -> None:
    """The Python API behind a thread pool (``asyncio.to_thread(searcher.search, …)``, 32 at once in
    bench/load_async.py): the OpenVINO embedder's shared infer request made concurrent searches fail or, with
    equal shapes, rank with another query's vector."""
    from concurrent.futures import ThreadPoolExecutor

    tiny_kret.index([REPO / "samples" / "ko"], collection="c")
    searcher = tiny_kret.open("c")
    try:
        queries = [
            "김치",
            "한글의 역사",
            "연차 휴가는 며칠인가요?",
            "서울 인구",
            "세종대왕이 만든 글자",
            "태풍",
        ]
        expected = {q: [h.chunk_id for h in searcher.search(q)] for q in queries}
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda q: (q, [h.chunk_id for h in searcher.search(q)]), queries * 8))
        assert all(ids == expected[q] for q, ids in got)
    finally:
        searcher.collection.close()


_EXIT_CHILD = """
import gc, sys, time
from pathlib import Path
import kret.engine.edge_store as es
close = es.EdgeStore.close
def slow_close(self):
    time.sleep(1.0)  # a collection that takes a moment to close (flush, a big shard)
    close(self)
    Path(sys.argv[2]).write_text("closed")
es.EdgeStore.close = slow_close
from kret.api import Kret
retriever = Kret(home=sys.argv[1], model=sys.argv[3]).as_retriever(collection="c", k=2)
retriever.invoke("김치")
del retriever  # released: its worker closes the collection in the background
gc.collect()
"""


def test_process_exit_waits_for_a_retriever_that_is_still_closing(tiny_kret, home, tiny_model_dir, fast_tmp):
    """bench/load_async.py's retriever run aborted at exit ("terminate called without an active exception",
    exit 134): a retriever released just before exit left its worker thread closing the collection while
    the interpreter shut down, because the exit hook only waited for collections still open."""
    pytest.importorskip("langchain_core")
    tiny_kret.index([REPO / "samples" / "ko"], collection="c")
    marker = fast_tmp / "closed"
    r = subprocess.run(
        [sys.executable, "-c", _EXIT_CHILD, str(home), str(marker), str(tiny_model_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "KRET_THREADS": "1"},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert marker.is_file(), "the process exited before the retriever's collection was closed"
