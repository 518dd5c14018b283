"""KorQuAD dev paragraphs and questions as small test corpora (for the mining and fine-tuning tests)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from shared_data import BENCH as SHARED_BENCH

BENCH = SHARED_BENCH / "korquad-dev"


def korquad(n_docs: int) -> tuple[list[dict], list[tuple[str, str]]]:
    """The first ``n_docs`` paragraphs of KorQuAD dev and their (question, paragraph id) pairs."""
    docs = []
    with (BENCH / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            docs.append(json.loads(line))
            if len(docs) == n_docs:
                break
    ids = {d["_id"] for d in docs}
    questions = {}
    with (BENCH / "queries.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            questions[row["_id"]] = row["text"]
    pairs = []
    for line in (BENCH / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        qid, did, _ = line.split("\t")
        if did in ids:
            pairs.append((questions[qid], did))
    return docs, pairs


def write_corpus(folder: Path, docs: list[dict]) -> dict[str, Path]:
    """One markdown file per paragraph: ``# title`` then the text."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for d in docs:
        path = folder / f"{d['_id']}.md"
        path.write_text(f"# {d['title']}\n\n{d['text']}\n", encoding="utf-8")
        paths[d["_id"]] = path
    return paths


def doc_id_of(path: Path) -> str:
    """The collection doc id ``Kret.index`` gives a file (its absolute path below the filesystem root)."""
    return Path(os.path.abspath(path)).resolve().relative_to(Path("/")).as_posix()
