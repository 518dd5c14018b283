"""What the terminal experience costs: snippets per query, and a warm prompt against a cold `kret search`.

Part 1 (Kiwi only, no model): for the first N queries of a BEIR set, build snippets for 10 passages (the
relevant one + the 9 that follow it in the corpus, the size of a default result list) and time it; also
count how often the relevant passage has at least one highlighted query term.

Part 2 (``--prompt``, needs a built collection): the median wall time of ``kret search Q`` as a new process
(model, Kiwi and collection loaded every time) against the per-question latency the interactive prompt
reports for the same questions, in one run, interleaved.

    python bench/terminal_bench.py ../shared/data/bench/korquad-dev --queries 300
    KRET_HOME=... python bench/terminal_bench.py ../shared/data/bench/korquad-dev --prompt --collection ko --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _qrels(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        qid, did, score = line.split("\t")[:3]
        if int(score) > 0:
            out.setdefault(qid, did)
    return out


def bench_snippets(dataset: Path, n: int) -> dict:
    from kret.engine.snippets import SnippetMaker
    from kret.korean import get_kiwi

    corpus = _jsonl(dataset / "corpus.jsonl")
    index = {d["_id"]: i for i, d in enumerate(corpus)}
    qrels = _qrels(dataset / "qrels" / "test.tsv")
    queries = [q for q in _jsonl(dataset / "queries.jsonl") if q["_id"] in qrels][:n]
    get_kiwi().tokenize("준비")  # load outside the timing
    times, cpu, with_terms, basis = [], [], 0, {}
    for q in queries:
        i = index[qrels[q["_id"]]]
        texts = [corpus[(i + j) % len(corpus)]["text"] for j in range(10)]
        t0, c0 = time.perf_counter(), time.process_time()
        maker = SnippetMaker(q["text"])
        snippets = maker.make_many(texts)
        times.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
        rel = snippets[0]
        with_terms += bool(rel.spans)
        basis[rel.basis] = basis.get(rel.basis, 0) + 1
    times.sort()
    return {
        "queries": len(queries),
        "ms_per_query_10_snippets_p50": round(statistics.median(times), 2),
        "ms_per_query_10_snippets_p95": round(times[int(0.95 * (len(times) - 1))], 2),
        "cpu_ms_per_query_p50": round(statistics.median(cpu), 2),
        "relevant_passage_with_highlight": round(with_terms / len(queries), 4),
        "relevant_passage_basis": basis,
    }


def bench_prompt(dataset: Path, collection: str, rounds: int, n: int) -> dict:
    questions = [q["text"] for q in _jsonl(dataset / "queries.jsonl")[:n]]
    kret = [sys.executable, "-m", "kret.cli.main"]
    cold, warm = [], []
    for _ in range(rounds):
        for q in questions[:3]:
            t0 = time.perf_counter()
            subprocess.run(
                [*kret, "search", q, "-c", collection, "-k", "10"], check=True, capture_output=True
            )
            cold.append(time.perf_counter() - t0)
        r = subprocess.run(
            [*kret, "search", "-i", "-c", collection],
            input="\n".join(questions) + "\n",
            text=True,
            capture_output=True,
            check=True,
        )
        for m in re.finditer(r"search ([\d.]+) ms \+ snippets ([\d.]+) ms", r.stderr):
            warm.append(float(m.group(1)) + float(m.group(2)))
    return {
        "cold_kret_search_s_median": round(statistics.median(cold), 2),
        "prompt_per_question_ms_median": round(statistics.median(warm), 1),
        "prompt_questions": len(warm),
        "cold_runs": len(cold),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--prompt", action="store_true", help="also time cold `kret search` vs the prompt")
    ap.add_argument("--collection", default="default")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    result = {"load": os.getloadavg(), "snippets": bench_snippets(args.dataset, args.queries)}
    if args.prompt:
        result["prompt"] = bench_prompt(args.dataset, args.collection, args.rounds, 10)
    print(json.dumps(result, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
