"""One large Korean text file through `kret index`: peak RSS, time to the first committed part, resume.

    python bench/large_doc.py make --mb 50 --out /tmp/ko50.txt            # from ../shared/data/kowiki
    python bench/large_doc.py run /tmp/ko50.txt --model .kret/test-cache/tiny-model --home /tmp/kret-big \
        --max-seconds 900                                                  # stops with Ctrl-C semantics

RSS is sampled every 0.2 s in total and split into anonymous memory and resident pages of mapped files (see
``_status_mb``); ``ru_maxrss`` is the kernel's exact peak of the total.

`make` concatenates kowiki article lines (no blank lines: the whole file is one paragraph, the worst case
for sentence splitting). `run` indexes the file in-process, samples RSS every 0.2 s, records when each part
is committed (the engine's progress notes), and after ``--max-seconds`` interrupts the run as Ctrl-C would;
run it again with the same ``--home`` to measure the resume. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import bz2
import json
import resource
import signal
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


def _status_mb(*keys: str) -> dict[str, float]:
    """Fields of /proc/self/status in MB: VmRSS = RssAnon (the process's own memory) + RssFile (resident
    pages of mapped files: the model, libraries and Qdrant Edge's memory-mapped segments, which the kernel
    can drop and re-read under pressure) + RssShmem."""
    out = dict.fromkeys(keys, 0.0)
    with open("/proc/self/status") as f:
        for line in f:
            key = line.split(":", 1)[0]
            if key in out:
                out[key] = int(line.split()[1]) / 1024
    return out


def _rss_mb() -> float:
    return _status_mb("VmRSS")["VmRSS"]


def run(path: Path, model: str, home: Path, max_seconds: float, part_chars: int | None) -> None:
    started = time.perf_counter()
    peak = {"VmRSS": 0.0, "RssAnon": 0.0, "RssFile": 0.0}
    stop = threading.Event()
    committing = (
        threading.Event()
    )  # the final commit: sampled every 10 ms (a short spike was missed at 0.2 s)

    def sample() -> None:
        while not stop.is_set():
            for key, mb in _status_mb(*peak).items():
                peak[key] = max(peak[key], mb)
            time.sleep(0.01 if committing.is_set() else 0.2)

    threading.Thread(target=sample, daemon=True).start()
    from kret.api import Kret

    overrides = {"home": home, "model": model}
    if part_chars:
        overrides["large_doc_chars"] = part_chars
    kr = Kret(**overrides)
    parts: list[float] = []
    chunks = {"n": 0, "tokens": 0}

    def progress(stage=None, note=None, chunks_=None, **kw):
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
        before = dict(peak)
        for key in peak:
            peak[key] = 0.0
        committing.set()
        t = time.perf_counter()
        original_commit(self, state)  # sampling stays at 10 ms to the end: the index build follows
        print(
            f"[{time.perf_counter() - started:7.1f}s] final commit of {state.n_chunks} chunks took "
            f"{time.perf_counter() - t:.1f}s; peak during it (MB): {json.dumps({k: round(v) for k, v in peak.items()})}",
            file=sys.stderr,
            flush=True,
        )
        for key in peak:
            peak[key] = max(peak[key], before[key])

    EdgeStore.commit_parts = commit_parts
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    signal.setitimer(signal.ITIMER_REAL, max_seconds)
    summary = kr.index([path])
    signal.setitimer(signal.ITIMER_REAL, 0)
    stop.set()
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
    a = ap.parse_args()
    if a.cmd == "make":
        make(a.mb, a.out)
    else:
        run(a.file, a.model, a.home, a.max_seconds, a.part_chars)


if __name__ == "__main__":
    main()
