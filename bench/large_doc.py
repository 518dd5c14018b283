"""One large Korean text file through `kret index`: peak RSS, time to the first committed part, resume.

    python bench/large_doc.py make --mb 50 --out /tmp/ko50.txt            # from ../shared/data/kowiki
    python bench/large_doc.py run /tmp/ko50.txt --model .kret/test-cache/tiny-model --home /tmp/kret-big \
        --max-seconds 900                                                  # stops with Ctrl-C semantics
    python bench/large_doc.py run /tmp/ko50.txt --model .kret/test-cache/tiny-model --home /tmp/kret-big2g \
        --max-seconds 7200 --memory-limit-mb 2048                          # inside a 2 GB cgroup (root)

RSS is sampled every 10 ms **by a child process** reading /proc/<pid>/status (``sample``), split into anonymous
memory and resident pages of mapped files (``_status_mb``): a thread of the indexing process cannot sample,
because Qdrant Edge's calls hold the GIL for their whole duration (a 0.1 s `count` lets a 1 ms ticker thread run
once) — an in-process sampler missed the 0.7 GB rise inside the final index build's one call. ``ru_maxrss`` is the
kernel's exact peak of the total; every rise of it (VmHWM) by more than 50 MB is logged with its time, next to
the parts' progress lines.

`make` concatenates kowiki article lines (no blank lines: the whole file is one paragraph, the worst case
for sentence splitting). `run` indexes the file in-process, records when each part is committed (the engine's
progress notes), and after ``--max-seconds`` interrupts the run as Ctrl-C would; run it again with the same
``--home`` to measure the resume. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import bz2
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

KOWIKI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kowiki" / "text"


def make(mb: float, out: Path) -> None:
    target = int(mb * 1e6)
    n = 0
    with out.open("w", encoding="utf-8") as f:
        for p in sorted(KOWIKI.rglob("wiki_*.bz2")):
            with bz2.open(p, "rt", encoding="utf-8") as src:
                for line in src:
                    if line.startswith(("<doc", "</doc")) or not line.strip():
                        continue
                    size = len(line.encode("utf-8"))
                    if n + size > target:
                        print(json.dumps({"file": str(out), "bytes": n}))
                        return
                    f.write(line)
                    n += size
    print(json.dumps({"file": str(out), "bytes": n}))


def _status_mb(pid: int | str, *keys: str) -> dict[str, float]:
    """Fields of /proc/PID/status in MB: VmRSS = RssAnon (the process's own memory) + RssFile (resident
    pages of mapped files: the model, libraries and Qdrant Edge's memory-mapped segments, which the kernel
    can drop and re-read under pressure) + RssShmem; VmHWM is the kernel's peak of VmRSS."""
    out = dict.fromkeys(keys, 0.0)
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key = line.split(":", 1)[0]
            if key in out:
                out[key] = int(line.split()[1]) / 1024
    return out


PEAK_KEYS = ("VmRSS", "RssAnon", "RssFile")


def sample(pid: int, started: float) -> None:
    """The sampler child: every 10 ms until the parent closes our stdin's pipe or exits, then one JSON line of
    peaks on stdout. Times are seconds since the parent's ``started`` (``time.time()``), as in its own lines."""
    peak = dict.fromkeys(PEAK_KEYS, 0.0)
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    logged_hwm = 0.0
    while not done.is_set():
        try:
            now = _status_mb(pid, *PEAK_KEYS, "VmHWM")
        except (FileNotFoundError, ProcessLookupError):
            break
        for key in peak:
            peak[key] = max(peak[key], now[key])
        # the kernel's peak moved: log *when* it did, next to the progress lines
        if now["VmHWM"] > logged_hwm + 50:
            logged_hwm = now["VmHWM"]
            print(
                f"[{time.time() - started:7.1f}s] high-water mark {logged_hwm:.0f} MB "
                f"(rss now {now['VmRSS']:.0f}, anon {now['RssAnon']:.0f}, file {now['RssFile']:.0f})",
                file=sys.stderr,
                flush=True,
            )
        time.sleep(0.01)
    print(json.dumps(peak), flush=True)


class MemoryLimit:
    """This process inside a new cgroup whose memory limit is ``mb`` (v2 ``memory.max`` or v1
    ``memory.limit_in_bytes``; needs root). Why: RSS counts resident pages of Qdrant Edge's memory-mapped
    segment files, which the kernel drops or writes back under pressure, so a run that stays inside a hard
    limit answers "does it fit a machine with N MB" where a peak RSS cannot. The cgroup's own peak (anonymous
    memory + page cache charged to it) is reported; exceeding the limit is an OOM kill (exit 137)."""

    def __init__(self, mb: int) -> None:
        v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
        root = Path("/sys/fs/cgroup") if v2 else Path("/sys/fs/cgroup/memory")
        here = next(
            line.split(":", 2)[2].strip()
            for line in Path("/proc/self/cgroup").read_text().splitlines()
            if (line.startswith("0::") if v2 else ":memory:" in line)
        )
        self.home = root / here.lstrip("/")
        self.group = root / f"kret-bench-{os.getpid()}"
        try:
            self.group.mkdir()
            (self.group / ("memory.max" if v2 else "memory.limit_in_bytes")).write_text(str(mb << 20))
            (self.group / "cgroup.procs").write_text(str(os.getpid()))
        except OSError as e:
            sys.exit(f"--memory-limit-mb needs a writable cgroup memory controller (root): {e}")
        self.peak_file = self.group / ("memory.peak" if v2 else "memory.max_usage_in_bytes")

    def close(self) -> int:
        """Leave the cgroup, remove it; its peak charge in MB."""
        peak = int(self.peak_file.read_text()) >> 20
        (self.home / "cgroup.procs").write_text(str(os.getpid()))
        self.group.rmdir()
        return peak


def _rss_mb() -> float:
    return _status_mb("self", "VmRSS")["VmRSS"]


def run(
    path: Path, model: str, home: Path, max_seconds: float, part_chars: int | None, limit_mb: int | None
) -> None:
    limit = MemoryLimit(limit_mb) if limit_mb else None
    started_wall = time.time()
    started = time.perf_counter()
    sampler = subprocess.Popen(
        [sys.executable, __file__, "sample", str(os.getpid()), repr(started_wall)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    from kret.api import Kret

    overrides = {"home": home, "model": model}
    if part_chars:
        overrides["large_doc_chars"] = part_chars
    kr = Kret(**overrides)
    parts: list[float] = []
    chunks = {"n": 0, "tokens": 0}

    def progress(stage=None, note=None, **kw):
        if note:
            print(f"[{time.perf_counter() - started:7.1f}s] {note}", file=sys.stderr, flush=True)
        chunks["n"] += kw.get("chunks", 0) or 0
        chunks["tokens"] += kw.get("tokens", 0) or 0

    from kret.engine.edge_store import EdgeStore

    original = EdgeStore.write_part

    def write_part(self, state, points):
        original(self, state, points)
        parts.append(time.perf_counter() - started)
        print(
            f"[{parts[-1]:7.1f}s] part {len(parts)} committed: {state.n_chunks} chunks, rss {_rss_mb():.0f} MB",
            file=sys.stderr,
            flush=True,
        )

    EdgeStore.write_part = write_part
    original_commit = EdgeStore.commit_parts

    def commit_parts(self, state):
        t = time.perf_counter()
        print(
            f"[{t - started:7.1f}s] final commit of {state.n_chunks} chunks starts",
            file=sys.stderr,
            flush=True,
        )
        original_commit(self, state)
        print(
            f"[{time.perf_counter() - started:7.1f}s] final commit took {time.perf_counter() - t:.1f}s",
            file=sys.stderr,
            flush=True,
        )

    EdgeStore.commit_parts = commit_parts
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    signal.setitimer(signal.ITIMER_REAL, max_seconds)
    summary = kr.index([path], progress=progress)
    signal.setitimer(signal.ITIMER_REAL, 0)
    peak, _ = sampler.communicate("")  # closing its stdin ends the sampler
    peak = json.loads(peak)
    cgroup_peak = limit.close() if limit else None
    print(
        json.dumps(
            {
                "file": str(path),
                "mb": round(path.stat().st_size / 1e6, 1),
                "seconds": round(time.perf_counter() - started, 1),
                "interrupted": summary.interrupted,
                "added": summary.added,
                "parts_committed": len(parts),
                "first_part_s": round(parts[0], 1) if parts else None,
                "chunks_embedded": chunks["n"],
                "tokens_embedded": chunks["tokens"],
                "peak_rss_mb_sampled": round(peak["VmRSS"]),
                "peak_anon_mb_sampled": round(peak["RssAnon"]),
                "peak_file_mb_sampled": round(peak["RssFile"]),
                "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                "memory_limit_mb": limit_mb,
                "cgroup_peak_mb": cgroup_peak,
                "warnings": summary.warnings,
            },
            ensure_ascii=False,
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--mb", type=float, default=50)
    m.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("run")
    r.add_argument("file", type=Path)
    r.add_argument("--model", default="default")
    r.add_argument("--home", type=Path, required=True)
    r.add_argument("--max-seconds", type=float, default=900)
    r.add_argument("--part-chars", type=int, default=None)
    r.add_argument("--memory-limit-mb", type=int, default=None, help="run inside a cgroup with this limit")
    sm = sub.add_parser("sample")  # internal: the sampler child of `run`
    sm.add_argument("pid", type=int)
    sm.add_argument("started", type=float)
    a = ap.parse_args()
    if a.cmd == "sample":
        sample(a.pid, a.started)
    elif a.cmd == "make":
        make(a.mb, a.out)
    else:
        run(a.file, a.model, a.home, a.max_seconds, a.part_chars, a.memory_limit_mb)


if __name__ == "__main__":
    main()
