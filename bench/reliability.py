"""Reliability under the things a hostile or unlucky user does: kill -9, two writers at once, gc at the
wrong moment, names that try to leave KRET_HOME.

    python bench/reliability.py --index-kills 20 --reindex-kills 5 --races 3
    python bench/reliability.py --measure          # what Qdrant Edge pre-allocates for a new shard

Every scenario drives the real ``kret`` CLI in child processes (``python -m kret.cli.main``) with the tiny
random test model (tests/model_fixtures.py, 32-dim, the default model's tokenizer) on a corpus of
synthetic Korean documents, then inspects the collection in this process:

- index-kill: ``kret index`` into a new collection, SIGKILL at a uniformly random moment of a calibrated
  run; every document must then be complete (marker + all its chunks) or absent; a second ``kret index``
  must finish and hold every document; ``kret gc`` must leave no orphan version.
- reindex-kill: the same for ``kret reindex``: the live version stays complete whatever the moment.
- race: two ``kret index`` runs on different folders creating the same collection, released together
  by a barrier at file discovery: each exits 0 or 6 ("in use"), and every run that exited 0 has all its
  documents live (none lost in an orphan version).
- gc-during-reindex: ``kret gc`` while ``kret reindex`` builds its version: gc skips it, the reindex
  finishes (exit 0, no traceback) and the new version is live and complete.
- adversarial: ``-c ../x``, absolute paths, ``a/b``, ``..`` for index / collections show / rm / gc: every
  call exits 2 with one line, nothing is created or deleted outside KRET_HOME.

Prints one row per scenario: trials, failures, documents lost, orphans left (after the recovery run, and
after ``kret gc``). Exit status 1 when any trial failed. ``run_all`` is also what the fast test calls.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NAME = "rel"
_SYLLABLES = "가나다라마바사아자차카타파하국민정부회사학교서울부산대한역사문화경제과학기술"


@dataclass
class Row:
    scenario: str
    trials: int = 0
    failures: int = 0
    docs_lost: int = 0
    orphans_after_recovery: int = 0
    orphans_after_gc: int = 0
    notes: list[str] = field(default_factory=list)

    def fail(self, why: str) -> None:
        self.failures += 1
        if len(self.notes) < 5:
            self.notes.append(why)


# corpus and children -------------------------------------------------------------------------------
def make_corpus(folder: Path, n_docs: int, seed: int, tag: str = "d") -> list[Path]:
    """Korean-like documents of 1-12 paragraphs, so some take one chunk and some many."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n_docs):
        paras = []
        for _ in range(rng.randint(1, 12)):
            words = ["".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))) for _ in range(40)]
            paras.append(" ".join(words) + "다.")
        p = folder / f"{tag}{i:03d}.txt"
        p.write_text(f"{tag} 문서 {i}\n\n" + "\n\n".join(paras), encoding="utf-8")
        paths.append(p)
    return paths


def child_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KRET_")}
    env.update(
        KRET_HOME=str(home),
        KRET_CONFIG=str(home.parent / "no-kret.toml"),
        KRET_TORCH_THREADS="1",
        KRET_EMBED_BATCH_SIZE="8",
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
    )
    return env


def kret_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "kret.cli.main", *args]


def run(home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        kret_cmd(*args), env=child_env(home), capture_output=True, text=True, timeout=timeout
    )


def has_traceback(text: str) -> bool:
    return "Traceback (most recent call last)" in text


# inspection ------------------------------------------------------------------------------------------
def inspect(home: Path, name: str = NAME) -> dict:
    """Live version, versions, complete / partial documents (by marker vs. the chunks really stored)."""
    from kret.engine.edge_store import EdgeBackend

    backend = EdgeBackend(home / "collections")
    out = {"live": None, "versions": [], "complete": set(), "partial": set(), "orphans": 0}
    if not (home / "collections" / name).is_dir():
        return out
    out["live"] = backend.live_version(name)
    out["versions"] = backend.versions(name)
    out["orphans"] = len([v for v in out["versions"] if v != out["live"]])
    if out["live"] is None:
        return out
    store = backend.open_version(name, out["live"])
    try:
        states = store.doc_states()
        counts: dict[str, int] = {}
        for p in store.scroll_chunks():
            counts[p.payload["doc_id"]] = counts.get(p.payload["doc_id"], 0) + 1
    finally:
        store.close()
    for doc_id, st in states.items():
        (out["complete"] if counts.get(doc_id, 0) == st.n_chunks else out["partial"]).add(st.path)
    out["partial"] |= {doc_id for doc_id in counts if doc_id not in states}
    return out


def paths_of(files: list[Path]) -> set[str]:
    return {str(p.resolve()) for p in files}


def kill_at_random(
    cmd_args: list[str], home: Path, watch: Path, horizon: float, rng: random.Random, early: float = 0.2
) -> str:
    """Start the command and SIGKILL it at a random moment; returns where the moment fell.

    With probability ``early`` the delay is uniform over the whole calibrated run (start-up included);
    otherwise the clock starts when ``watch`` (the version folder the run creates) appears, and the kill
    falls uniformly in the rest of the run: creation, embedding, WAL writes, the HNSW build, the switch.
    """
    proc = subprocess.Popen(
        kret_cmd(*cmd_args), env=child_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    t0 = time.monotonic()
    if rng.random() < early:
        phase, delay = "whole run", rng.uniform(0, horizon)
    else:
        while not watch.exists() and proc.poll() is None and time.monotonic() - t0 < horizon * 3:
            time.sleep(0.005)
        phase, delay = (
            "after the version folder appeared",
            rng.uniform(0, max(horizon - (time.monotonic() - t0), 0.5)),
        )
    try:
        proc.wait(timeout=delay)
        return f"{phase}: finished before the kill"
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return f"{phase}: killed at +{time.monotonic() - t0:.1f}s"


class Api:
    """In-process Kret per home for setup, recovery, listing and gc: start-up of a child costs ~1 CPU-s and
    10-100 s of wall time on a loaded machine, and only the process that is killed (or that races) has to
    be a real child."""

    def __init__(self, model: str) -> None:
        self.model = model

    def kret(self, home: Path):
        from kret.api import Kret

        return Kret(home=home, model=self.model, embed_batch_size=8, torch_threads=1)

    def index(self, home: Path, folder: Path) -> str | None:
        try:
            self.kret(home).index([folder], collection=NAME)
        except Exception as exc:  # a KretError here is a failed recovery, reported, not raised
            return f"{type(exc).__name__}: {exc}"
        return None

    def reindex(self, home: Path) -> str | None:
        try:
            self.kret(home).reindex(NAME, model=self.model)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    def listed_with_command(self, home: Path) -> bool:
        """Whether `collections list` data shows every orphan with the command that removes it."""
        infos = self.kret(home).collections()
        return all(not i.get("orphans") or i.get("remove_with") == f"kret gc -c {i['name']}" for i in infos)

    def gc(self, home: Path) -> None:
        self.kret(home).gc()


def calibrate(cmd: list[str], home: Path) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    r = run(home, *cmd)
    return time.perf_counter() - t0, r


def check_recovery(
    row: Row, api: Api, home: Path, expected: set, label: str, *, kept_versions: int = 0
) -> None:
    """After a killed run and its recovery run: every document live and complete; the killed run's leftover
    versions (beyond the ``kept_versions`` old ones kept for rollback) listed with the command that removes
    them; and ``kret gc`` leaving none."""
    state = inspect(home)
    lost = expected - state["complete"]
    row.docs_lost += len(lost)
    if lost or state["partial"]:
        row.fail(f"{label}: {len(lost)} documents missing after recovery")
    leftovers = max(state["orphans"] - kept_versions, 0)
    row.orphans_after_recovery += leftovers
    if leftovers and not api.listed_with_command(home):
        row.fail(f"{label}: orphan versions not listed with the command that removes them")
    api.gc(home)
    row.orphans_after_gc += inspect(home)["orphans"]


# scenarios -------------------------------------------------------------------------------------------
def scenario_index_kills(work: Path, model: str, trials: int, docs: int, rng: random.Random) -> Row:
    row = Row("kill -9 during `kret index`")
    api = Api(model)
    folder = work / "corpus"
    expected = paths_of(make_corpus(folder, docs, seed=1))
    cmd = ["index", str(folder), "-c", NAME, "-m", model]
    horizon, r = calibrate(cmd, work / "cal")
    shutil.rmtree(work / "cal", ignore_errors=True)
    if r.returncode != 0:
        row.trials = row.failures = 1
        row.notes = [f"calibration run failed: {r.stderr.strip()[-300:]}"]
        return row
    row.notes.append(f"calibrated run {horizon:.1f}s")
    for t in range(trials):
        row.trials += 1
        home = work / f"ik{t}"
        when = kill_at_random(cmd, home, home / "collections" / NAME / "v0001", horizon, rng)
        print(f"index-kill trial {t}: {when}", file=sys.stderr, flush=True)
        state = inspect(home)
        if state["partial"]:
            row.fail(f"trial {t} ({when}): {len(state['partial'])} partial documents after the kill")
        err = api.index(home, folder)
        if err:
            row.fail(f"trial {t} ({when}): recovery run failed: {err[:200]}")
        check_recovery(row, api, home, expected, f"trial {t} ({when})")
        shutil.rmtree(home, ignore_errors=True)
    return row


def scenario_reindex_kills(work: Path, model: str, trials: int, docs: int, rng: random.Random) -> Row:
    row = Row("kill -9 during `kret reindex`")
    api = Api(model)
    folder = work / "rcorpus"
    expected = paths_of(make_corpus(folder, docs, seed=2))
    base = work / "rbase"
    err = api.index(base, folder)
    cal = work / "rcal"
    shutil.copytree(base, cal)
    cmd = ["reindex", "-c", NAME, "-m", model]
    horizon, r = calibrate(cmd, cal)
    shutil.rmtree(cal, ignore_errors=True)
    if err or r.returncode != 0:
        row.trials = row.failures = 1
        row.notes = [f"setup failed: {err or r.stderr.strip()[-300:]}"]
        return row
    row.notes.append(f"calibrated run {horizon:.1f}s")
    for t in range(trials):
        row.trials += 1
        home = work / f"rk{t}"
        shutil.copytree(base, home)
        when = kill_at_random(cmd, home, home / "collections" / NAME / "v0002", horizon, rng)
        print(f"reindex-kill trial {t}: {when}", file=sys.stderr, flush=True)
        state = inspect(home)
        if state["partial"] or expected - state["complete"]:
            row.fail(f"trial {t} ({when}): live version incomplete after the kill")
        err = api.reindex(home)
        if err:
            row.fail(f"trial {t} ({when}): reindex after the kill failed: {err[:200]}")
        # reindex keeps the previous version for rollback by design: only versions beyond it are leftovers
        check_recovery(row, api, home, expected, f"trial {t} ({when})", kept_versions=1)
        shutil.rmtree(home, ignore_errors=True)
    return row


_BARRIER_DRIVER = """
import os, sys, time
from pathlib import Path
barrier, n = Path(sys.argv[1]), int(sys.argv[2])
import kret.api as api
real = api.discover
def discover(paths):
    barrier.mkdir(parents=True, exist_ok=True)
    (barrier / str(os.getpid())).touch()
    deadline = time.monotonic() + 60
    while len(list(barrier.iterdir())) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    return real(paths)
api.discover = discover
sys.argv = ["kret", *sys.argv[3:]]
from kret.cli.main import main
main()
"""


def race(home: Path, model: str, folders: list[Path], barrier: Path) -> list[subprocess.CompletedProcess]:
    """Run one ``kret index`` per folder into the same new collection, released together at discovery."""
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _BARRIER_DRIVER,
                str(barrier),
                str(len(folders)),
                "index",
                str(f),
                "-c",
                NAME,
                "-m",
                model,
                "--json",
            ],
            env=child_env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for f in folders
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return results


def scenario_race(work: Path, model: str, trials: int, docs: int) -> Row:
    row = Row("two `kret index` creating one collection")
    a = make_corpus(work / "race-a", docs, seed=3, tag="a")
    b = make_corpus(work / "race-b", docs, seed=4, tag="b")
    for t in range(trials):
        row.trials += 1
        home = work / f"race{t}"
        results = race(home, model, [work / "race-a", work / "race-b"], work / f"barrier{t}")
        state = inspect(home)
        codes = [r.returncode for r in results]
        if (
            any(c not in (0, 6) for c in codes)
            or 0 not in codes
            or any(has_traceback(r.stderr) for r in results)
        ):
            row.fail(f"trial {t}: exit codes {codes}: {[r.stderr.strip()[-150:] for r in results]}")
        for files, r in zip((a, b), results, strict=True):
            if r.returncode == 0:
                lost = paths_of(files) - state["complete"]
                row.docs_lost += len(lost)
                if lost:
                    row.fail(f"trial {t}: a run exited 0 but {len(lost)} of its documents are not live")
        row.orphans_after_recovery += state["orphans"]
        if state["orphans"]:
            row.fail(f"trial {t}: {state['orphans']} orphan versions after the race")
        Api(model).gc(home)
        row.orphans_after_gc += inspect(home)["orphans"]
        shutil.rmtree(home, ignore_errors=True)
    return row


def scenario_gc_during_reindex(work: Path, model: str, trials: int, docs: int) -> Row:
    """A real ``kret reindex`` child; ``gc`` from this process (another process, as far as locks go) as
    soon as the child's new version folder exists."""
    row = Row("`kret gc` during `kret reindex`")
    api = Api(model)
    folder = work / "gcorpus"
    expected = paths_of(make_corpus(folder, docs, seed=5))
    base = work / "gbase"
    err = api.index(base, folder)
    if err:
        row.trials = row.failures = 1
        row.notes = [f"setup failed: {err}"]
        return row
    for t in range(trials):
        row.trials += 1
        home = work / f"gr{t}"
        shutil.copytree(base, home)
        proc = subprocess.Popen(
            kret_cmd("reindex", "-c", NAME, "-m", model),
            env=child_env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        new_dir = home / "collections" / NAME / "v0002"
        deadline = time.monotonic() + 600
        while not new_dir.is_dir() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        skipped: list[str] = []
        removed = api.kret(home).gc(skipped=skipped)
        _out, err = proc.communicate(timeout=900)
        state = inspect(home)
        if proc.returncode != 0 or has_traceback(err):
            row.fail(f"trial {t}: reindex exit {proc.returncode}: {err.strip()[-200:]}")
        if "rel/v0002" in removed:
            row.fail(f"trial {t}: gc removed the version being built")
        lost = expected - state["complete"]
        row.docs_lost += len(lost)
        if state["live"] != "v0002" or lost:
            row.fail(f"trial {t}: live {state['live']}, {len(lost)} documents missing")
        row.orphans_after_recovery += max(state["orphans"] - 1, 0)
        api.gc(home)
        row.orphans_after_gc += inspect(home)["orphans"]
        shutil.rmtree(home, ignore_errors=True)
    return row


ADVERSARIAL_NAMES = ("../x", "../../x", "../outside", "{outside}", "a/b", "..")


def scenario_adversarial(work: Path, model: str, names: tuple[str, ...] = ADVERSARIAL_NAMES) -> Row:
    row = Row("adversarial collection names")
    home = work / "adv" / "home"
    corpus = make_corpus(work / "adv" / "corpus", 2, seed=6)
    outside = work / "adv" / "outside"
    (outside / "v0001" / "wal").mkdir(parents=True)
    (outside / "CURRENT").write_text("v0001\n")
    (outside / "precious.txt").write_text("keep me")
    before = sorted(str(p) for p in (work / "adv").rglob("*") if home not in p.parents)
    for n in (name.format(outside=outside) for name in names):
        for args in (
            ["index", str(corpus[0].parent), "-c", n, "-m", model],
            ["collections", "show", n],
            ["collections", "rm", n, "--yes"],
            ["gc", "-c", n],
        ):
            row.trials += 1
            r = run(home, *args)
            lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
            if r.returncode != 2 or has_traceback(r.stderr) or len(lines) != 1:
                row.fail(
                    f"{args[:2]} -c {n!r}: exit {r.returncode}, {len(lines)} lines: {r.stderr.strip()[-150:]}"
                )
    after = sorted(str(p) for p in (work / "adv").rglob("*") if home not in p.parents)
    if after != before:
        row.fail(f"files outside KRET_HOME changed: {sorted(set(before) ^ set(after))[:5]}")
    return row


def measure_prealloc(dim: int = 384) -> dict:
    """Apparent vs. allocated bytes of a fresh Qdrant Edge shard (what a new version reserves)."""
    from kret.engine.diskspace import shard_usage
    from kret.engine.edge_store import EdgeBackend

    with tempfile.TemporaryDirectory() as tmp:
        backend = EdgeBackend(Path(tmp) / "collections")
        version, store = backend.new_version("probe")
        store.create(dim, {"model": {"name": "probe", "fingerprint": "x"}})
        store.close()
        path = Path(tmp) / "collections" / "probe" / version
        allocated, unbacked = shard_usage(path)
        files = {
            str(p.relative_to(path)): p.stat().st_size
            for p in sorted(path.rglob("*"))
            if p.is_file() and p.stat().st_size >= (8 << 20)
        }
    return {
        "dim": dim,
        "allocated_bytes": allocated,
        "apparent_bytes": allocated + unbacked,
        "large_files": files,
    }


def tiny_model(cache: Path) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from model_fixtures import build_tiny_model

    target = cache / "tiny-model"
    if not (target / "modules.json").is_file():
        build_tiny_model(target)
    return target


def run_all(
    work: Path,
    model: str,
    *,
    index_kills: int,
    reindex_kills: int,
    races: int,
    gc_trials: int,
    docs: int,
    seed: int = 0,
    report=None,
) -> list[Row]:
    """Every scenario in turn; ``report(row)`` is called as each one ends (a long run on a loaded machine
    still leaves the finished rows behind if it is stopped)."""
    rng = random.Random(seed)
    steps = []
    if races:
        steps.append(lambda: scenario_race(work, model, races, docs))
    if gc_trials:
        steps.append(lambda: scenario_gc_during_reindex(work, model, gc_trials, docs))
    if reindex_kills:
        steps.append(lambda: scenario_reindex_kills(work, model, reindex_kills, docs, rng))
    if index_kills:
        steps.append(lambda: scenario_index_kills(work, model, index_kills, docs, rng))
    steps.append(lambda: scenario_adversarial(work, model))
    rows = []
    for step in steps:
        rows.append(step())
        if report:
            report(rows[-1])
    return rows


def print_table(rows: list[Row]) -> None:
    print(
        "| scenario | trials | failures | documents lost | orphans after recovery run | orphans after `kret gc` |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r.scenario} | {r.trials} | {r.failures} | {r.docs_lost} | {r.orphans_after_recovery} | "
            f"{r.orphans_after_gc} |"
        )
    for r in rows:
        for note in r.notes:
            print(f"  {r.scenario}: {note}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index-kills", type=int, default=20)
    ap.add_argument("--reindex-kills", type=int, default=5)
    ap.add_argument("--races", type=int, default=3)
    ap.add_argument("--gc-trials", type=int, default=2)
    ap.add_argument("--docs", type=int, default=40, help="documents per corpus")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", help="model folder (default: the tiny test model, built if missing)")
    ap.add_argument("--work", help="scratch folder (default: a new one under /dev/shm or /tmp)")
    ap.add_argument("--measure", action="store_true", help="only measure Edge's pre-allocation")
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure_prealloc(), indent=2))
        return
    model = args.model or str(tiny_model(REPO / ".kret" / "test-cache"))
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="kret-rel-", dir=base))
    started = time.perf_counter()
    try:
        rows = run_all(
            work,
            model,
            index_kills=args.index_kills,
            reindex_kills=args.reindex_kills,
            races=args.races,
            gc_trials=args.gc_trials,
            docs=args.docs,
            seed=args.seed,
            report=lambda row: (print_table([row]), sys.stdout.flush()),
        )
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"model: {model}; {args.docs} documents per corpus; {time.perf_counter() - started:.0f}s; load {os.getloadavg()}"
    )
    print_table(rows)
    sys.exit(1 if any(r.failures for r in rows) else 0)


if __name__ == "__main__":
    main()
