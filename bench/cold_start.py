"""`kret search` cold start, phase by phase, each phase measured in a fresh process (median of N rounds).

    python bench/cold_start.py --model default --rounds 5          # indexes samples/ko into a scratch home once
    python bench/cold_start.py --model .kret/test-cache/tiny-model  # the non-embedder phases without the real model

Phases (cumulative order of a real `kret search "…"`): interpreter + CLI import, `kret.api` import, settings,
collection open (Qdrant Edge), model resolution, embedder load, Kiwi load, query encoding (dense, then
Kiwi BM25 terms), the Qdrant query. Also: `kret search` end to end as a subprocess (process start → results
printed) and `kret --help`, plus Kiwi's own load time per option set. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUERY = "김치는 어떻게 만드나요?"

PHASES = r"""
import json, sys, time
t = [time.perf_counter()]; names = []
def mark(n): t.append(time.perf_counter()); names.append(n)
import kret.cli.main; mark("import kret.cli")
import kret.api; mark("import kret.api")
from kret.api import Kret
kr = Kret(home=sys.argv[1]); mark("settings + registry")
from kret.engine.collection import open_collection
coll = open_collection(kr.backend, "cold"); mark("open collection (Qdrant Edge)")
info = kr._model_of(coll, None); mark("resolve model")
emb = kr.embedder(info); mark("load embedder")
from kret.korean import get_kiwi
get_kiwi(); mark("load Kiwi")
from kret.engine.search import Searcher, SearchOptions
s = Searcher(coll, emb, kr.encoder_for(coll.manifest))
dense = emb.encode_queries([sys.argv[2]]); mark("encode query (dense)")
sparse = s.encoder.encode_query(sys.argv[2]); mark("encode query (Kiwi BM25)")
hits = s.search(sys.argv[2], SearchOptions(k=10)); mark("search (incl. re-encoding)")
coll.close(); mark("close")
print(json.dumps(dict(zip(names, [b - a for a, b in zip(t, t[1:])]))))
"""

KIWI = r"""
import json, sys, time
t0 = time.perf_counter(); import kiwipiepy; t1 = time.perf_counter()
kw = json.loads(sys.argv[1]); k = kiwipiepy.Kiwi(**kw); t2 = time.perf_counter()
k.tokenize("김치는 어떻게 만드나요?"); t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "construct": t2 - t1, "first tokenize": t3 - t2}))
"""


def _run(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{args[:4]} failed: {proc.stderr[-2000:]}")
    return wall, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--home", type=Path, default=None, help="scratch KRET_HOME (default: a temp folder)")
    a = ap.parse_args()
    home = a.home or Path(tempfile.mkdtemp(prefix="kret-cold-"))
    env = {**os.environ, "KRET_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    if not (home / "collections" / "cold").exists():
        _run(["kret", "index", "samples/ko", "-c", "cold", "-m", a.model, "--json"], env)
    rounds: dict[str, list[float]] = {}
    for _ in range(a.rounds):  # interleaved: each round runs every measurement once
        w, _out = _run(["kret", "--help"], env)
        rounds.setdefault("kret --help (wall)", []).append(w)
        w, _out = _run(["kret", "search", QUERY, "-c", "cold", "-k", "3", "--json"], env)
        rounds.setdefault("kret search (wall, process start -> results printed)", []).append(w)
        w, out = _run([sys.executable, "-c", PHASES, str(home), QUERY], env)
        for name, sec in json.loads(out).items():
            rounds.setdefault(f"phase: {name}", []).append(sec)
        for label, kw in (
            ("default (workers=min(4,cpus))", {"num_workers": 2}),
            ("num_workers=0", {"num_workers": 0}),
        ):
            _w, out = _run([sys.executable, "-c", KIWI, json.dumps(kw)], env)
            for name, sec in json.loads(out).items():
                rounds.setdefault(f"kiwi {label}: {name}", []).append(sec)
    load = os.getloadavg()
    print(
        json.dumps(
            {
                "model": a.model,
                "rounds": a.rounds,
                "loadavg": [round(x, 1) for x in load],
                "median_s": {k: round(statistics.median(v), 3) for k, v in rounds.items()},
            },
            ensure_ascii=False,
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
