"""Write a BEIR dataset's (query, positive document) pairs as a `kret train finetune --queries` file.

The experiment of issue 16 treats korquad-dev as a user would: the corpus is indexed with `kret index`, and
this file is the user's "few thousand (question, document) pairs". Positives are named by the corpus row id
(``kq0``), which the trainer resolves as the tail of the indexed document id (``…/corpus.jsonl#kq0``).

    python bench/korquad_queries.py ../shared/data/bench/korquad-dev .kret/ft-data/korquad-queries.jsonl
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path


def main(dataset: str, out: str) -> None:
    ds = Path(dataset)
    queries = {}
    for line in (ds / "queries.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            queries[row["_id"]] = row["text"]
    rows = []
    for line in (ds / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        qid, doc, score = line.split("\t")
        if int(score) > 0:
            rows.append({"query_id": qid, "query": queries[qid], "doc_id": doc})
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"{len(rows)} pairs -> {path} sha256 {hashlib.sha256(path.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
