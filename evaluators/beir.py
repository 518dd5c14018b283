"""Loading and validating BEIR-layout datasets (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``).

Evaluation numbers are only as trustworthy as the data behind them, so the loader is strict where a mistake
would change the numbers silently (bad JSON, missing ids, duplicate ids, malformed qrels rows are hard
errors naming the file and line) and loud where the BEIR convention asks to drop rows (qrels that name
unknown queries or documents, queries without a positive judgement): those are skipped and *counted* in
``BeirDataset.warnings`` so a report can show them. Files are streamed line by line and hashed on the way,
so the hash in a report identifies exactly the bytes that were evaluated.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kret.errors import DatasetError

__all__ = ["BeirDataset", "load_beir"]

_HASH_CHARS = 16
_EXAMPLES = 3


@dataclass
class BeirDataset:
    """One split of a BEIR dataset, reduced to what evaluation needs.

    ``queries`` and ``qrels`` hold only the *evaluable* queries of the split (at least one qrel with score
    > 0), in the order of ``queries.jsonl``, so a runner can iterate ``queries`` and every query it sends
    is one that counts. ``corpus`` keeps every document, because distractors are part of the benchmark.
    """

    name: str
    path: Path
    split: str
    corpus: dict[str, tuple[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    data_hash: str  # corpus + queries + the split's qrels: names exactly what a report measured
    corpus_hash: str  # corpus only: all an index depends on, so new queries or qrels reuse it
    warnings: list[str] = field(default_factory=list)

    @property
    def n_docs(self) -> int:
        return len(self.corpus)

    @property
    def n_queries(self) -> int:
        return len(self.queries)

    @property
    def n_positive_qrels(self) -> int:
        """Judgements with score > 0: the count baselines.md reports as "positive qrels"."""
        return sum(1 for rels in self.qrels.values() for score in rels.values() if score > 0)


def load_beir(folder: Path, split: str = "test") -> BeirDataset:
    """Load and validate one split of a BEIR folder; raise ``DatasetError`` naming file and line on bad data."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(
            f"{folder}: dataset folder not found (expected corpus.jsonl, queries.jsonl, qrels/)"
        )
    corpus_path = folder / "corpus.jsonl"
    queries_path = folder / "queries.jsonl"
    qrels_path = folder / "qrels" / f"{split}.tsv"
    for path in (corpus_path, queries_path):
        if not path.is_file():
            raise DatasetError(f"{path}: file not found")
    if not qrels_path.is_file():
        available = (
            sorted(p.stem for p in (folder / "qrels").glob("*.tsv")) if (folder / "qrels").is_dir() else []
        )
        hint = f" (available splits: {', '.join(available)})" if available else ""
        raise DatasetError(f"{qrels_path}: file not found for split {split!r}{hint}")

    hasher = hashlib.sha256()
    warnings: list[str] = []

    corpus: dict[str, tuple[str, str]] = {}
    for line_no, row in _read_jsonl(corpus_path, hasher):
        doc_id = _row_id(row, corpus_path, line_no)
        title = _optional_str(row, "title", corpus_path, line_no)
        text = _optional_str(row, "text", corpus_path, line_no)
        if doc_id in corpus:
            raise DatasetError(f"{corpus_path} line {line_no}: duplicate _id {doc_id!r}")
        corpus[doc_id] = (title, text)
    if not corpus:
        raise DatasetError(f"{corpus_path}: no documents")
    corpus_hash = hasher.copy().hexdigest()[:_HASH_CHARS]

    all_queries: dict[str, str] = {}
    for line_no, row in _read_jsonl(queries_path, hasher):
        query_id = _row_id(row, queries_path, line_no)
        if query_id in all_queries:
            raise DatasetError(f"{queries_path} line {line_no}: duplicate _id {query_id!r}")
        all_queries[query_id] = _optional_str(row, "text", queries_path, line_no)

    raw_qrels, n_rows, skipped = _read_qrels(qrels_path, hasher, all_queries, corpus)
    warnings.extend(skipped)

    no_positive = [q for q, rels in raw_qrels.items() if not any(s > 0 for s in rels.values())]
    if no_positive:
        warnings.append(
            f"{qrels_path.name}: {len(no_positive)} judged queries have no qrel with score > 0 and are not "
            f"evaluated (BEIR convention), e.g. {_examples(no_positive)}"
        )
    unjudged = [q for q in all_queries if q not in raw_qrels]
    if unjudged:
        warnings.append(
            f"{queries_path.name}: {len(unjudged)} of {len(all_queries)} queries have no qrels in split "
            f"{split!r} and are not evaluated, e.g. {_examples(unjudged)}"
        )

    evaluable = {q for q, rels in raw_qrels.items() if any(s > 0 for s in rels.values())}
    if not evaluable:
        raise DatasetError(
            f"{qrels_path}: split {split!r} has no evaluable query (no qrel with score > 0 for a known query "
            f"and document among {n_rows} rows)"
        )
    queries = {q: text for q, text in all_queries.items() if q in evaluable}
    blank_queries = [q for q, text in queries.items() if not text.strip()]
    if blank_queries:
        warnings.append(
            f"{queries_path.name}: {len(blank_queries)} evaluated queries have empty text, e.g. "
            f"{_examples(blank_queries)}"
        )
    blank_docs = [d for d, (title, text) in corpus.items() if not (title + text).strip()]
    if blank_docs:
        warnings.append(f"{corpus_path.name}: {len(blank_docs)} documents have neither title nor text")
    qrels = {q: raw_qrels[q] for q in queries}

    return BeirDataset(
        name=folder.resolve().name,
        path=folder,
        split=split,
        corpus=corpus,
        queries=queries,
        qrels=qrels,
        data_hash=hasher.hexdigest()[:_HASH_CHARS],
        corpus_hash=corpus_hash,
        warnings=warnings,
    )


def _read_lines(path: Path, hasher: Any) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, decoded line) while feeding the raw bytes to the hash."""
    hasher.update(path.name.encode() + b"\0")
    try:
        with path.open("rb") as handle:
            for line_no, raw in enumerate(handle, start=1):
                hasher.update(raw)
                try:
                    text = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    raise DatasetError(f"{path} line {line_no}: not valid UTF-8 ({exc.reason})") from None
                yield line_no, text
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from None
    hasher.update(b"\0")


def _read_jsonl(path: Path, hasher: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    for line_no, text in _read_lines(path, hasher):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                f"{path} line {line_no}: invalid JSON ({exc.msg}, column {exc.colno})"
            ) from None
        if not isinstance(row, dict):
            raise DatasetError(f"{path} line {line_no}: expected a JSON object, got {type(row).__name__}")
        yield line_no, row


def _row_id(row: dict[str, Any], path: Path, line_no: int) -> str:
    value = row.get("_id")
    # BEIR files sometimes carry numeric ids; they are the same id as their string form.
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value) == "":
        raise DatasetError(f"{path} line {line_no}: missing or empty _id")
    return str(value)


def _optional_str(row: dict[str, Any], key: str, path: Path, line_no: int) -> str:
    value = row.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DatasetError(f"{path} line {line_no}: {key!r} must be a string, got {type(value).__name__}")
    return value


def _read_qrels(
    path: Path, hasher: Any, queries: dict[str, str], corpus: dict[str, tuple[str, str]]
) -> tuple[dict[str, dict[str, int]], int, list[str]]:
    """Parse qrels; skip (and count) rows naming unknown queries/documents instead of failing.

    Unknown ids are skipped rather than fatal because published BEIR sets do contain them (qrels built
    before a corpus was filtered); a count in the warnings keeps that visible.
    """
    qrels: dict[str, dict[str, int]] = {}
    n_rows = 0
    unknown_q_rows = 0
    unknown_queries: dict[str, None] = {}
    unknown_d_rows = 0
    unknown_docs: dict[str, None] = {}
    duplicates = 0
    first_content = True
    for line_no, text in _read_lines(path, hasher):
        line = text.rstrip("\r\n")
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            parts = line.split()
        if first_content:
            first_content = False
            # A header is optional; a first row whose score column is not even a number is taken as one.
            if len(parts) == 3 and not _is_number(parts[2]):
                continue
        if len(parts) != 3:
            raise DatasetError(
                f"{path} line {line_no}: expected 3 tab-separated columns (query-id, corpus-id, score), "
                f"got {len(parts)}"
            )
        query_id, doc_id, score_text = (p.strip() for p in parts)
        if not query_id or not doc_id:
            raise DatasetError(f"{path} line {line_no}: empty query-id or corpus-id")
        if not _is_int(score_text):
            raise DatasetError(f"{path} line {line_no}: score {score_text!r} is not an integer")
        n_rows += 1
        if query_id not in queries:
            unknown_q_rows += 1
            unknown_queries[query_id] = None
            continue
        if doc_id not in corpus:
            unknown_d_rows += 1
            unknown_docs[doc_id] = None
            continue
        rels = qrels.setdefault(query_id, {})
        if doc_id in rels:
            duplicates += 1
        rels[doc_id] = int(score_text)

    warnings: list[str] = []
    if unknown_q_rows:
        warnings.append(
            f"{path.name}: skipped {unknown_q_rows} rows naming {len(unknown_queries)} queries not in "
            f"queries.jsonl, e.g. {_examples(list(unknown_queries))}"
        )
    if unknown_d_rows:
        warnings.append(
            f"{path.name}: skipped {unknown_d_rows} rows naming {len(unknown_docs)} documents not in "
            f"corpus.jsonl, e.g. {_examples(list(unknown_docs))}"
        )
    if duplicates:
        warnings.append(
            f"{path.name}: {duplicates} duplicate (query, document) rows; the last score was kept"
        )
    return qrels, n_rows, warnings


def _is_int(text: str) -> bool:
    try:
        int(text.strip())
    except ValueError:
        return False
    return True


def _is_number(text: str) -> bool:
    try:
        float(text.strip())
    except ValueError:
        return False
    return True


def _examples(ids: list[str]) -> str:
    shown = ", ".join(repr(i) for i in ids[:_EXAMPLES])
    return shown + (", ..." if len(ids) > _EXAMPLES else "")
