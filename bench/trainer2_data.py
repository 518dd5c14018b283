"""Build the Trainer II evidence corpus: MIRACL/Mr.TyDi training positives among kowiki distractors.

The issue asks for a collection made of the training positives of ../shared/data/train/miracl-mrtydi-ko plus
kowiki article leads as distractors, so that negatives are mined from a realistic index. Written here (not
into the repo) are ``corpus/corpus.jsonl`` (BEIR rows, indexed with ``kret index``) and ``queries.jsonl``
(query -> ``doc_id`` of the collection, for ``kret train finetune --queries``).

Two leaks are closed on purpose and counted:
- articles that are also in the miracl-ko-mini corpus (an evaluation set) are dropped, with their queries,
  so fine-tuning never sees an evaluation document as a positive or a negative;
- distractors never share an article id with a positive (a copy of the positive would be mined as a
  "hard negative" that is in fact the answer).
Distractor leads are cut like the positives (<= 1000 chars at a sentence boundary).

    python bench/trainer2_data.py --out .kret/trainer2 --distractors 2000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from pathlib import Path

from kret.trainer.pairs import cut_text
from kret.trainer.wiki import read_wiki

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CORPUS_FILE = "corpus.jsonl"


def article_of(passage_id: str) -> str:
    return passage_id.split("#", 1)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=Path, default=SHARED / "train" / "miracl-mrtydi-ko" / "train.jsonl")
    ap.add_argument("--wiki", type=Path, default=SHARED / "kowiki" / "text")
    ap.add_argument("--exclude", type=Path, default=SHARED / "bench" / "miracl-ko-mini" / "corpus.jsonl")
    ap.add_argument("--distractors", type=int, default=2000)
    ap.add_argument("--min-chars", type=int, default=300, help="shortest distractor lead kept")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    excluded = {article_of(json.loads(line)["_id"]) for line in args.exclude.open(encoding="utf-8")}
    rows = [json.loads(line) for line in args.train.open(encoding="utf-8")]
    kept = [r for r in rows if str(r["positive_curid"]) not in excluded]
    positives: dict[str, dict[str, str]] = {}
    for r in kept:
        positives.setdefault(str(r["positive_curid"]), {"title": r["positive_title"], "text": r["positive"]})

    pool = []
    for page in read_wiki(args.wiki):
        if page.page_id in positives or page.page_id in excluded:
            continue
        lead = cut_text(page.text, max_chars=1000)
        if len(lead) >= args.min_chars:
            pool.append((page.page_id, page.title, lead))
    random.Random(args.seed).shuffle(pool)
    distractors = sorted(pool[: args.distractors])

    corpus_dir = args.out / "corpus"
    corpus_dir.mkdir(parents=True, exist_ok=True)
    with (corpus_dir / CORPUS_FILE).open("w", encoding="utf-8") as fh:
        for curid, doc in sorted(positives.items()):
            fh.write(
                json.dumps({"_id": curid, "title": doc["title"], "text": doc["text"]}, ensure_ascii=False)
                + "\n"
            )
        for curid, title, lead in distractors:
            fh.write(json.dumps({"_id": curid, "title": title, "text": lead}, ensure_ascii=False) + "\n")
    with (args.out / "queries.jsonl").open("w", encoding="utf-8") as fh:
        for r in kept:
            row = {
                "query_id": r["query_id"],
                "query": r["query"],
                "doc_id": f"{CORPUS_FILE}#{r['positive_curid']}",
            }
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")

    def sha(p: Path) -> str:
        return hashlib.sha256(p.read_bytes()).hexdigest()[:16]

    summary = {
        "pairs_in_file": len(rows),
        "pairs_dropped_eval_overlap": len(rows) - len(kept),
        "pairs_kept": len(kept),
        "queries_kept": len({r["query_id"] for r in kept}),
        "positive_articles": len(positives),
        "distractor_pool": len(pool),
        "distractors": len(distractors),
        "corpus_sha256_16": sha(corpus_dir / CORPUS_FILE),
        "queries_sha256_16": sha(args.out / "queries.jsonl"),
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
