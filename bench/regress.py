"""Reproducible numbers, Pyserini-style: re-run the commands behind every number in the docs and check them.

Every number that README.md ("Quality and speed") and bench/README.md report lives in
``bench/regressions/*.yaml`` next to the command that produces it, the dataset (with the sha256 of each of its
files), the expected value and a tolerance. This script re-runs one run, a tag or everything, prints OK/FAIL
per row with the measured value and the delta, records the last result (git commit, date, machine load) in
``bench/regressions/results.json``, and renders the markdown tables from the YAML between
``<!-- NAME -->`` / ``<!-- /NAME -->`` markers — so a number in the docs is a number somebody can re-run,
and a hand edit that drifts from the YAML is caught by ``render --check`` (a fast-lane test runs it).

    python bench/regress.py list [--tag cheap]                 # runs, rows, tags, cost
    python bench/regress.py run sparse-parity.korquad-dev      # one run (all its rows)
    python bench/regress.py run --tag cheap                    # minutes on 2 cores; CI's slow lane runs one
    python bench/regress.py run --tag release --fresh          # hours on CPU: before a release
    python bench/regress.py run --tag cheap --record           # take the measured values as the new
                                                               # expected ones, re-render, show the diff
    python bench/regress.py render [--check]                   # YAML -> README.md, bench/README.md

Quality rows are tight (NDCG ±0.0005; counts exact). Speed rows are marked ``speed: true``: they are
machine-dependent, get a loose relative tolerance, and a speed FAIL does not fail the exit status unless
``--strict-speed``. ``--record`` re-records quality rows only; add ``--record-speed`` to take speed numbers
too (only do that on a quiet machine and say so in the commit).

Schema of a regression file (one per topic; ``datasets.yaml`` and ``tables.yaml`` are special)::

    runs:
      - id: eval.korquad-dev.sparse          # unique; rows are "<run id>/<name>"
        tags: [cheap, eval, korquad-dev]
        dataset: korquad-dev                 # a key of datasets.yaml; {dataset} in the command is its path
        command: kret eval {dataset} --mode sparse --out {out}
        source: out                          # read rows from the JSON file {out} (default) or "stdout"
        minutes: 4                           # rough cost on the 2-core reference machine
        needs: [other.run.id]                # runs that must have run first (e.g. they build the index)
        requires_model: pt-20261122-085501   # a registry version in KRET_HOME; SKIP with a reason if absent
        requires_module: langchain_qdrant    # likewise for an optional Python package
        rows:
          - {id: eval.korquad-dev.sparse/ndcg@10, key: metrics.ndcg@10.mean, expected: 0.9563, tol: 0.0005}
          - {id: ..., regex: 'NDCG@10 ([0-9.]+)', expected: ..., tol: ...}          # from stdout
          - {id: ..., key: timings.query_p50_ms, expected: 7.95, rel_tol: 2.0, speed: true, fmt: raw}

``tol`` is absolute, ``rel_tol`` relative (2.0 = within ×3 either way: |m − e| ≤ 2·e, and m ≥ e / 3);
``fmt`` is how the value is rendered (a format spec such as ``.4f`` or ``,d``; ``raw`` prints it as
stored).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
REGRESSIONS = REPO / "bench" / "regressions"
RESULTS = REGRESSIONS / "results.json"
DEFAULT_DATA_ROOT = REPO.parent / "shared" / "data" / "bench"
DEFAULT_HOME = REPO / ".kret" / "regress-home"
OUT_DIR = REPO / "bench" / "out" / "regress"
SPECIAL_FILES = ("datasets.yaml", "tables.yaml")
MARKER = re.compile(r"(<!-- (?P<name>[\w.-]+) -->\n)(?P<body>.*?)(?P<close>[ \t]*<!-- /(?P=name) -->)", re.S)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster on ~700 rows
PLACEHOLDER = re.compile(r"\{\{\s*(?P<id>[^}|]+?)\s*(?:\|\s*(?P<fmt>[^}]+?)\s*)?\}\}")


class RegressError(Exception):
    """A broken regression file or an unusable environment (not a failed row)."""


# ---------------------------------------------------------------------------------------------- the model


@dataclass
class Row:
    id: str
    expected: float
    file: Path
    key: str | None = None
    regex: str | None = None
    tol: float | None = None
    rel_tol: float | None = None
    speed: bool = False
    fmt: str = ".4f"

    def check(self, measured: float) -> bool:
        if self.rel_tol is not None:
            e = abs(self.expected)
            return abs(measured - self.expected) <= self.rel_tol * e and abs(measured) >= e / (
                1 + self.rel_tol
            )
        return abs(measured - self.expected) <= (self.tol or 0.0) + 1e-12

    def tolerance_text(self) -> str:
        return f"±{self.rel_tol:.0%}" if self.rel_tol is not None else f"±{self.tol or 0:g}"

    def render(self, value: float, fmt: str | None = None) -> str:
        spec = fmt or self.fmt
        if spec == "raw":
            return str(int(value)) if float(value).is_integer() else repr(float(value))
        if spec.endswith("d"):
            return format(int(round(value)), spec)
        return format(value, spec)


@dataclass
class Run:
    id: str
    command: str
    file: Path
    rows: list[Row]
    tags: list[str] = field(default_factory=list)
    dataset: str | None = None
    source: str = "out"
    minutes: float | None = None
    needs: list[str] = field(default_factory=list)
    requires_model: str | None = None
    requires_module: str | None = None
    note: str | None = None


@dataclass
class Suite:
    runs: dict[str, Run]
    rows: dict[str, Row]
    datasets: dict[str, dict[str, Any]]
    blocks: list[dict[str, Any]]


_ROW_KEYS = {"id", "expected", "key", "regex", "tol", "rel_tol", "speed", "fmt"}
_RUN_KEYS = {
    "id",
    "command",
    "rows",
    "tags",
    "dataset",
    "source",
    "minutes",
    "needs",
    "requires_model",
    "requires_module",
    "note",
}


def load_suite(folder: Path = REGRESSIONS) -> Suite:
    """Read and validate every YAML file; a mistake names its file and the run or row it is in."""
    datasets = yaml.load((folder / "datasets.yaml").read_text(encoding="utf-8"), Loader=_LOADER)["datasets"]
    blocks = yaml.load((folder / "tables.yaml").read_text(encoding="utf-8"), Loader=_LOADER)["blocks"]
    runs: dict[str, Run] = {}
    rows: dict[str, Row] = {}
    for path in sorted(folder.glob("*.yaml")):
        if path.name in SPECIAL_FILES:
            continue
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER) or {}
        defaults = doc.get("defaults", {})
        for raw in doc.get("runs", []):
            where = f"{path.name}: run {raw.get('id')!r}"
            unknown = set(raw) - _RUN_KEYS
            if unknown or not {"id", "command", "rows"} <= set(raw):
                raise RegressError(f"{where}: needs id, command, rows; unknown keys {sorted(unknown)}")
            if raw["id"] in runs:
                raise RegressError(f"{where}: duplicate run id")
            if raw.get("dataset") and raw["dataset"] not in datasets:
                raise RegressError(f"{where}: dataset {raw['dataset']!r} is not in datasets.yaml")
            run_rows = []
            for r in raw["rows"]:
                r = {**defaults.get("row", {}), **r}
                if set(r) - _ROW_KEYS or "id" not in r or "expected" not in r:
                    raise RegressError(f"{where}: bad row {r}")
                if not str(r["id"]).startswith(raw["id"] + "/"):
                    raise RegressError(f"{where}: row id {r['id']!r} must start with '{raw['id']}/'")
                if (r.get("key") is None) == (r.get("regex") is None):
                    raise RegressError(f"{where}: row {r['id']!r} needs exactly one of key, regex")
                if (r.get("tol") is None) == (r.get("rel_tol") is None):
                    raise RegressError(f"{where}: row {r['id']!r} needs exactly one of tol, rel_tol")
                if r.get("speed") and r.get("rel_tol") is None:
                    raise RegressError(f"{where}: speed row {r['id']!r} must use rel_tol")
                if r["id"] in rows:
                    raise RegressError(f"{where}: duplicate row id {r['id']!r}")
                row = Row(file=path, **{k: v for k, v in r.items()})
                row.expected = float(row.expected)
                rows[row.id] = row
                run_rows.append(row)
            runs[raw["id"]] = Run(file=path, rows=run_rows, **{k: v for k, v in raw.items() if k != "rows"})
    for run in runs.values():
        for need in run.needs:
            if need not in runs:
                raise RegressError(f"{run.file.name}: run {run.id!r} needs unknown run {need!r}")
    return Suite(runs=runs, rows=rows, datasets=datasets, blocks=blocks)


# ---------------------------------------------------------------------------------------------- running


def git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_dataset(suite: Suite, name: str, data_root: Path, verified: dict[str, str | None]) -> str | None:
    """None when the dataset is present and every file has its recorded sha256, else the reason."""
    if name in verified:
        return verified[name]
    spec = suite.datasets[name]
    folder = data_root / spec["path"]
    reason = None
    if not folder.is_dir():
        reason = f"dataset {name} not found at {folder} (set --data-root or KRET_BENCH_DATA)"
    else:
        for rel, digest in spec["sha256"].items():
            f = folder / rel
            if not f.is_file():
                reason = f"dataset {name}: {f} is missing"
                break
            got = sha256_file(f)
            if got != digest:
                reason = (
                    f"dataset {name}: {rel} has sha256 {got[:16]}…, the regression expects {digest[:16]}…"
                )
                break
    verified[name] = reason
    return reason


def lookup(data: Any, dotted: str) -> float:
    for part in dotted.split("."):
        if isinstance(data, list):
            data = data[int(part)]
        elif isinstance(data, dict) and part in data:
            data = data[part]
        else:
            raise KeyError(dotted)
    return float(data)


def run_env(home: Path) -> dict[str, str]:
    """The commands see a clean kret environment: no developer KRET_* settings, no kret.toml, no server."""
    keep = ("KRET_THREADS", "KRET_TORCH_THREADS")  # thread counts change speed, not results
    env = {k: v for k, v in os.environ.items() if not k.startswith("KRET_") or k in keep}
    env.update(KRET_HOME=str(home), KRET_CONFIG=str(home / "no-kret.toml"), HF_HUB_OFFLINE="1")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def model_present(home: Path, version: str) -> bool:
    return (home / "models" / version).is_dir()


def order_runs(suite: Suite, selected: list[str]) -> list[Run]:
    """Selected runs plus what they need, prerequisites first, otherwise in file order."""
    order: list[str] = []

    def visit(rid: str, stack: tuple[str, ...] = ()) -> None:
        if rid in stack:
            raise RegressError(f"cycle in needs: {' -> '.join((*stack, rid))}")
        for need in suite.runs[rid].needs:
            visit(need, (*stack, rid))
        if rid not in order:
            order.append(rid)

    for rid in selected:
        visit(rid)
    return [suite.runs[r] for r in order]


@dataclass
class RowResult:
    row: Row
    status: str  # OK | FAIL | SKIP | ERROR
    measured: float | None = None
    reason: str = ""

    @property
    def delta(self) -> float | None:
        return None if self.measured is None else self.measured - self.row.expected


def execute(
    run: Run, suite: Suite, args: argparse.Namespace, verified: dict
) -> tuple[list[RowResult], float]:
    def all_rows(status: str, reason: str) -> list[RowResult]:
        return [RowResult(r, status, reason=reason) for r in run.rows]

    data_path = None
    if run.dataset:
        reason = check_dataset(suite, run.dataset, args.data_root, verified)
        if reason:
            return all_rows("SKIP", reason), 0.0
        data_path = args.data_root / suite.datasets[run.dataset]["path"]
    if run.requires_model and not model_present(args.home, run.requires_model):
        reason = f"model version {run.requires_model} is not in {args.home}/models (see `note`; or --home)"
        return all_rows("SKIP", reason), 0.0
    if run.requires_module and importlib.util.find_spec(run.requires_module) is None:
        return all_rows("SKIP", f"Python module {run.requires_module} is not installed ({run.note})"), 0.0
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / f"{run.id}.json"
    log = OUT_DIR / f"{run.id}.log"
    out.unlink(missing_ok=True)
    values = {
        "dataset": shlex.quote(str(data_path)) if data_path else "",
        "out": shlex.quote(str(out)),
        "home": shlex.quote(str(args.home)),
        "data_root": shlex.quote(str(args.data_root)),
    }
    # Only these placeholders: a command may hold other braces (JSON, Python dict literals).
    command = re.sub(r"\{(dataset|out|home|data_root)\}", lambda m: values[m.group(1)], run.command)
    print(f"== {run.id}: {command}", flush=True)
    t0 = time.perf_counter()
    with open(log, "w", encoding="utf-8") as fh:
        # Own process group, so a timeout stops the whole command (bash, kret, its workers), not just bash.
        proc = subprocess.Popen(
            ["bash", "-o", "pipefail", "-c", command],
            cwd=REPO,
            env=run_env(args.home),
            stdout=subprocess.PIPE,
            stderr=fh,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, _ = proc.communicate(timeout=args.timeout * 60 if args.timeout else None)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return all_rows("ERROR", f"timed out after {args.timeout} min ({log})"), time.perf_counter() - t0
        fh.write("\n--- stdout ---\n" + stdout)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        return all_rows(
            "ERROR", f"exit {proc.returncode} after {seconds:.0f} s ({log}): {' | '.join(tail)}"
        ), seconds
    report = None
    if run.source == "out":
        try:
            report = json.loads(out.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            return all_rows("ERROR", f"no JSON report at {out}: {e}"), seconds
    results = []
    for row in run.rows:
        try:
            if row.regex is not None:
                m = re.search(row.regex, stdout, re.M)
                if not m:
                    raise KeyError(f"regex {row.regex!r} not in the output")
                measured = float(m.group(1))
            else:
                measured = lookup(report if report is not None else json.loads(stdout), row.key)
        except (KeyError, ValueError, IndexError, TypeError) as e:
            results.append(RowResult(row, "ERROR", reason=f"cannot read the value: {e}"))
            continue
        results.append(RowResult(row, "OK" if row.check(measured) else "FAIL", measured))
    return results, seconds


def print_result(res: RowResult) -> None:
    row = res.row
    tag = " (speed, machine-dependent)" if row.speed and res.status == "FAIL" else ""
    if res.measured is None:
        print(f"{res.status:<5} {row.id}  expected {row.render(row.expected)}  {res.reason}", flush=True)
        return
    print(
        f"{res.status:<5} {row.id}  measured {row.render(res.measured)}  expected {row.render(row.expected)} "
        f"{row.tolerance_text()}  Δ {res.delta:+.4g}{tag}",
        flush=True,
    )


def save_results(path: Path, results: list[tuple[RowResult, float]], commit: str) -> None:
    """Merge into the results file: rows not run this time keep their last recorded result."""
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"rows": {}}
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load = round(os.getloadavg()[0], 2)
    for res, seconds in results:
        if res.status == "SKIP" and res.row.id in data["rows"]:
            continue  # a skip measured nothing: the last real result stands
        data["rows"][res.row.id] = {
            "status": res.status,
            "measured": res.measured,
            "expected": res.row.expected,
            "delta": None if res.delta is None else round(res.delta, 6),
            "reason": res.reason or None,
            "commit": commit,
            "date": date,
            "load_avg_1m": load,
            "run_seconds": round(seconds, 1),
        }
    data["rows"] = dict(sorted(data["rows"].items()))
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def record(results: list[RowResult], with_speed: bool) -> list[str]:
    """Write measured values as the new expected ones, editing the YAML line of each row in place."""
    changed = []
    for res in results:
        row = res.row
        if res.measured is None or (row.speed and not with_speed):
            continue
        spec = row.fmt.replace(",", "").replace("+", "")
        if row.fmt == "raw" or row.fmt.endswith("d"):
            new_value = Row.render(row, res.measured, "raw")
        elif spec.endswith("%"):  # a fraction printed as a percentage: its decimals plus the two of "%"
            new_value = format(res.measured, f".{int(spec[1:-1] or 0) + 2}f")
        else:  # as many decimals as the docs print: that is the precision the row claims
            new_value = format(res.measured, spec)
        if float(new_value) == row.expected:
            continue
        text = row.file.read_text(encoding="utf-8")
        line_re = re.compile(r"^(.*\bid: " + re.escape(row.id) + r",.*\bexpected: )([-+0-9.eE]+)(.*)$", re.M)
        text, n = line_re.subn(lambda m, v=new_value: m.group(1) + v + m.group(3), text, count=1)
        if n != 1:
            raise RegressError(f"{row.file.name}: cannot find the line of row {row.id!r} to re-record")
        row.file.write_text(text, encoding="utf-8")
        row.expected = float(new_value)
        changed.append(row.id)
    return changed


# ---------------------------------------------------------------------------------------------- rendering


def render_block(block: dict[str, Any], suite: Suite) -> str:
    def sub(m: re.Match) -> str:
        rid = m.group("id")
        if rid not in suite.rows:
            raise RegressError(f"tables.yaml block {block['marker']!r}: unknown row {rid!r}")
        row = suite.rows[rid]
        return row.render(row.expected, m.group("fmt"))

    return PLACEHOLDER.sub(sub, block["template"]).rstrip("\n") + "\n"


def render_status(suite: Suite, results_path: Path) -> str:
    """One line per run: its tags, cost and what its rows did the last time they ran."""
    data = json.loads(results_path.read_text(encoding="utf-8"))["rows"] if results_path.is_file() else {}
    lines = ["| run | tags | rows | ~min | last result | commit | date |", "|---|---|---:|---:|---|---|---|"]
    for run in suite.runs.values():
        got = [data[r.id] for r in run.rows if r.id in data]
        counts: dict[str, int] = {}
        for g in got:
            counts[g["status"]] = counts.get(g["status"], 0) + 1
        last = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) if got else "not run yet"
        newest = max(got, key=lambda g: g["date"]) if got else None
        lines.append(
            f"| `{run.id}` | {', '.join(run.tags)} | {len(run.rows)} | {run.minutes if run.minutes else '–'} | "
            f"{last} | {newest['commit'][:10] if newest else '–'} | {newest['date'][:10] if newest else '–'} |"
        )
    return "\n".join(lines) + "\n"


def render_all(suite: Suite, results_path: Path, check: bool) -> list[str]:
    """Replace every marked block; return the files that changed (or, with check, would change)."""
    by_file: dict[str, dict[str, str]] = {}
    for block in suite.blocks:
        body = render_status(suite, results_path) if block.get("status") else render_block(block, suite)
        by_file.setdefault(block["file"], {})[block["marker"]] = body
    changed = []
    for rel, bodies in by_file.items():
        path = REPO / rel
        text = path.read_text(encoding="utf-8")
        seen = set()

        def sub(m: re.Match, bodies=bodies, seen=seen) -> str:
            name = m.group("name")
            if name not in bodies:
                return m.group(0)
            seen.add(name)
            return m.group(1) + bodies[name] + m.group("close")

        new = MARKER.sub(sub, text)
        missing = set(bodies) - seen
        if missing:
            raise RegressError(
                f"{rel}: no markers for {sorted(missing)} (add <!-- NAME --> ... <!-- /NAME -->)"
            )
        if new != text:
            changed.append(rel)
            if not check:
                path.write_text(new, encoding="utf-8")
    return changed


# ---------------------------------------------------------------------------------------------- CLI


def select(suite: Suite, ids: list[str], tags: list[str], everything: bool) -> list[str]:
    if everything:
        return list(suite.runs)
    chosen = []
    for rid in ids:
        rid = rid.split("/", 1)[0]  # a row id selects its run
        if rid not in suite.runs:
            raise RegressError(f"no run {rid!r} (python bench/regress.py list)")
        chosen.append(rid)
    for tag in tags:
        chosen += [r.id for r in suite.runs.values() if tag in r.tags and r.id not in chosen]
    if not chosen:
        raise RegressError("name runs, --tag TAG or --all")
    return chosen


def cmd_list(suite: Suite, args: argparse.Namespace) -> int:
    for rid in select(suite, args.ids, args.tag, not (args.ids or args.tag)):
        run = suite.runs[rid]
        print(f"{run.id}  [{', '.join(run.tags)}]  ~{run.minutes or '?'} min  {run.file.name}")
        print(f"    {run.command}")
        if args.rows:
            for row in run.rows:
                speed = "  speed" if row.speed else ""
                print(f"    {row.id}  {row.render(row.expected)} {row.tolerance_text()}{speed}")
    return 0


def cmd_run(suite: Suite, args: argparse.Namespace) -> int:
    runs = order_runs(suite, select(suite, args.ids, args.tag, args.all))
    args.home.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        # Only what regress.py owns: the index is rebuilt, the model registry is kept.
        if args.home.resolve() != DEFAULT_HOME.resolve() and not args.force_fresh:
            raise RegressError(f"--fresh on a home regress.py does not own ({args.home}): add --force-fresh")
        shutil.rmtree(args.home / "collections", ignore_errors=True)
    print(
        f"{len(runs)} runs, home {args.home}, data {args.data_root}, load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    commit = git_commit()
    verified: dict[str, str | None] = {}
    all_results: list[tuple[RowResult, float]] = []
    for run in runs:
        results, seconds = execute(run, suite, args, verified)
        for res in results:
            print_result(res)
            all_results.append((res, seconds))
        if seconds:
            print(f"   ({seconds:.0f} s)", flush=True)
    save_results(args.results, all_results, commit)
    if args.results.resolve() == RESULTS.resolve() and not args.record:
        render_all(suite, args.results, check=False)  # the status table in bench/README.md
    counts: dict[str, int] = {}
    for res, _ in all_results:
        key = res.status + (" speed" if res.row.speed and res.status == "FAIL" else "")
        counts[key] = counts.get(key, 0) + 1
    print(
        "summary: "
        + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        + f"  (results: {args.results})"
    )
    if args.record:
        changed = record([r for r, _ in all_results], args.record_speed)
        print(f"re-recorded {len(changed)} expected values")
        render_all(load_suite(), args.results, check=False)
        subprocess.run(["git", "--no-pager", "diff", "--stat", "--", "bench", "README.md"], cwd=REPO)
        print("review: git diff -- bench/regressions README.md bench/README.md")
    failed = [
        r
        for r, _ in all_results
        if r.status == "ERROR" or (r.status == "FAIL" and (not r.row.speed or args.strict_speed))
    ]
    return 1 if failed and not args.record else 0


def cmd_render(suite: Suite, args: argparse.Namespace) -> int:
    changed = render_all(suite, args.results, check=args.check)
    if args.check:
        if changed:
            print(f"out of date: {', '.join(changed)} (run: python bench/regress.py render)")
            return 1
        print("markdown matches bench/regressions/*.yaml")
        return 0
    print(f"rendered {', '.join(changed) if changed else 'nothing (already up to date)'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_list = sub.add_parser("list", help="runs and rows")
    p_list.add_argument("ids", nargs="*")
    p_list.add_argument("--tag", action="append", default=[])
    p_list.add_argument("--rows", action="store_true", help="also every row with its expected value")
    p_run = sub.add_parser("run", help="re-run runs and check their rows")
    p_run.add_argument("ids", nargs="*", help="run ids (a row id selects its run)")
    p_run.add_argument("--tag", action="append", default=[], help="every run with this tag (repeatable)")
    p_run.add_argument("--all", action="store_true")
    p_run.add_argument("--home", type=Path, default=Path(os.environ.get("KRET_REGRESS_HOME", DEFAULT_HOME)))
    p_run.add_argument(
        "--data-root", type=Path, default=Path(os.environ.get("KRET_BENCH_DATA", DEFAULT_DATA_ROOT))
    )
    p_run.add_argument("--fresh", action="store_true", help="drop the home's collections first (re-index)")
    p_run.add_argument("--force-fresh", action="store_true", help="allow --fresh on a home given with --home")
    p_run.add_argument("--record", action="store_true", help="measured values become the expected ones")
    p_run.add_argument("--record-speed", action="store_true", help="with --record: speed rows too")
    p_run.add_argument("--strict-speed", action="store_true", help="a speed FAIL fails the exit status")
    p_run.add_argument("--timeout", type=float, default=0, help="minutes per run (0 = none)")
    p_run.add_argument("--results", type=Path, default=RESULTS)
    p_render = sub.add_parser("render", help="write the tables into the markdown between markers")
    p_render.add_argument("--check", action="store_true", help="only report whether the markdown is current")
    p_render.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    try:
        suite = load_suite()
        return {"list": cmd_list, "run": cmd_run, "render": cmd_render}[args.cmd](suite, args)
    except RegressError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
