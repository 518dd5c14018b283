"""Queries from a user's file (JSONL or TSV) resolved against the collection: by document id, path or passage text.

A passage text is matched to a chunk or document of the collection: exact text first, then a near-identical
dense match. A malformed line raises ``DatasetError`` naming the file and line; a well-formed row whose
positive is not in the collection is skipped and counted (data drift, not a broken file).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kret.errors import DatasetError, UserInputError
from kret.trainer.queries.catalog import CollectionCatalog
from kret.trainer.queries.records import QueryStats, TrainQuery, match_key, normalize_text

QUERY_KEYS = ("query", "question", "anchor")
ID_KEYS = ("positive_id", "doc_id")
AMBIGUOUS = ("ambiguous_doc_id", "ambiguous_path")
PATH_KEYS = ("path", "positive_path")
TEXT_KEYS = ("positive", "pos", "passage")
QID_KEYS = ("query_id", "qid", "id", "_id")
DENSE_MATCH_THRESHOLD = 0.95


@dataclass
class _RawRow:
    line: int
    query: str
    qid: str | None
    doc_id: str | None = None
    path: str | None = None
    text: str | None = None
    guess: str | None = None  # headerless TSV: doc id, path or text, decided against the collection


def _first(row: dict[str, Any], keys: Sequence[str]) -> tuple[str | None, Any]:
    for k in keys:
        if k in row and row[k] is not None:
            return k, row[k]
    return None, None


def _as_str(value: Any, where: str, key: str) -> str:
    if isinstance(value, list):  # BGE-style "pos": [passage, ...]: the first one is the positive
        value = value[0] if value else ""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and key in (*ID_KEYS, *QID_KEYS):
        value = str(value)
    if not isinstance(value, str):
        raise DatasetError(f"{where}: field {key!r} must be a string")
    return value


def _read_jsonl(path: Path, text: str) -> list[_RawRow]:
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            raise DatasetError(f"{where}: invalid JSON") from None
        if not isinstance(obj, dict):
            raise DatasetError(f"{where}: not a JSON object")
        qkey, query = _first(obj, QUERY_KEYS)
        if qkey is None:
            raise DatasetError(f"{where}: no query field ({'/'.join(QUERY_KEYS)})")
        query = _as_str(query, where, qkey)
        if not query.strip():
            raise DatasetError(f"{where}: empty query")
        qid_key, qid = _first(obj, QID_KEYS)
        raw = _RawRow(number, query.strip(), _as_str(qid, where, qid_key) if qid_key else None)
        for keys, attr in ((ID_KEYS, "doc_id"), (PATH_KEYS, "path"), (TEXT_KEYS, "text")):
            key, value = _first(obj, keys)
            if key is not None:
                value = _as_str(value, where, key)
                if value.strip():
                    setattr(raw, attr, value.strip() if attr != "text" else value)
                    break
        else:
            raise DatasetError(
                f"{where}: no positive: give a document id ({'/'.join(ID_KEYS)}), a path "
                f"({'/'.join(PATH_KEYS)}) or a passage ({'/'.join(TEXT_KEYS)})"
            )
        rows.append(raw)
    return rows


def _read_tsv(path: Path, text: str) -> list[_RawRow]:
    lines = [(n, line) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
    if not lines:
        return []
    known = {*QUERY_KEYS, *ID_KEYS, *PATH_KEYS, *TEXT_KEYS, *QID_KEYS}
    first = [c.strip().lower() for c in lines[0][1].rstrip("\r").split("\t")]
    header: list[str] | None = None
    if all(c in known for c in first) and any(c in QUERY_KEYS for c in first):
        header, lines = first, lines[1:]
    rows = []
    for number, line in lines:
        where = f"{path} line {number}"
        cells = next(csv.reader(io.StringIO(line.rstrip("\r")), delimiter="\t", quoting=csv.QUOTE_NONE))
        if header is None:
            if len(cells) != 2:
                raise DatasetError(
                    f"{where}: expected 2 tab-separated columns (query, positive) but got {len(cells)}; "
                    "add a header line (query, doc_id|path|positive, [query_id]) for other layouts"
                )
            query, positive = cells[0].strip(), cells[1].strip()
            if not query or not positive:
                raise DatasetError(f"{where}: empty query or positive")
            rows.append(_RawRow(number, query, None, guess=positive))
            continue
        if len(cells) != len(header):
            raise DatasetError(f"{where}: expected {len(header)} columns as in the header, got {len(cells)}")
        obj = dict(zip(header, cells, strict=True))
        qkey, query = _first(obj, QUERY_KEYS)
        if qkey is None or not str(query).strip():
            raise DatasetError(f"{where}: empty query")
        _, qid = _first(obj, QID_KEYS)
        raw = _RawRow(number, str(query).strip(), qid or None)
        for keys, attr in ((ID_KEYS, "doc_id"), (PATH_KEYS, "path"), (TEXT_KEYS, "text")):
            _, value = _first(obj, keys)
            if value and value.strip():
                setattr(raw, attr, value.strip())
                break
        else:
            raise DatasetError(f"{where}: empty positive")
        rows.append(raw)
    return rows


def _abspath(value: str) -> str:
    """The absolute form of a path as the loaders store it; '' for text that cannot be a path."""
    if "\n" in value or "\0" in value or len(value) > 1024:
        return ""
    try:
        return str(Path(value).expanduser().resolve())
    except (OSError, RuntimeError, ValueError):
        return ""


def _dense_match(
    catalog: CollectionCatalog, embedder: Any, texts: list[str], threshold: float, batch: int = 2048
) -> list[tuple[str | None, float]]:
    """Best stored chunk per text by cosine, streaming the store so only one batch of vectors is in memory."""
    if not texts:
        return []
    qv = embedder.encode_passages(texts)
    best = np.full(len(texts), -np.inf, dtype=np.float32)
    best_id: list[str | None] = [None] * len(texts)
    ids: list[str] = []
    mats: list[np.ndarray] = []

    def flush() -> None:
        if not ids:
            return
        m = np.stack(mats)
        m /= np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
        sims = qv @ m.T
        j = sims.argmax(axis=1)
        top = sims[np.arange(len(texts)), j]
        for i in np.nonzero(top > best)[0]:
            best[i] = top[i]
            best_id[i] = ids[j[i]]
        ids.clear()
        mats.clear()

    for p in catalog.store.scroll_chunks(with_vectors=True) if catalog.store is not None else ():
        if p.dense is None:
            continue
        ids.append(str(p.id))
        mats.append(np.asarray(p.dense, dtype=np.float32))
        if len(ids) >= batch:
            flush()
    flush()
    return [(cid if s >= threshold else None, float(s)) for cid, s in zip(best_id, best, strict=True)]


def load_queries_file(
    path: str | Path,
    catalog: CollectionCatalog,
    *,
    embedder: Any = None,
    threshold: float = DENSE_MATCH_THRESHOLD,
) -> tuple[list[TrainQuery], QueryStats]:
    """Read a JSONL or TSV file of query -> positive and resolve each positive in the collection.

    JSONL rows: ``query`` (or ``question``/``anchor``), optional ``query_id``, and one positive:
    ``positive_id``/``doc_id`` (a document id of the collection, or its tail: the JSONL row id or
    ``file.jsonl#row``, when only one document has it), ``path`` (a file path as indexed), or
    ``positive``/``pos``/``passage`` (text). TSV: ``query<TAB>positive`` where the positive is tried as a
    document id, then a path, then text; or a header line naming the columns with the JSONL keys.

    A text positive is matched to the chunk (or whole document) with the same normalised text, else to the
    most similar chunk if its cosine is at least ``threshold`` (needs ``embedder``), else the row is
    skipped and counted as ``positive_not_found``. Malformed lines raise ``DatasetError``.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    stats = QueryStats(source=str(path.resolve()), file_sha256=hashlib.sha256(data).hexdigest())
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        raw_rows = _read_jsonl(path, text)
    elif suffix in (".tsv", ".txt"):
        raw_rows = _read_tsv(path, text)
    else:
        raise UserInputError(f"{path}: queries must be a .jsonl or .tsv file")
    if not raw_rows:
        raise DatasetError(f"{path}: no query rows")
    stats.add("rows_read", len(raw_rows))

    # Positive lookup tables, built once.
    chunk_by_text: dict[str, str] = {}
    for c in catalog.chunks.values():
        for form in (match_key(c.text), match_key(c.embed_text)):
            chunk_by_text.setdefault(form, c.id)
    doc_by_text: dict[str, list[str]] = defaultdict(list)
    for d, t in catalog.plain_doc_texts().items():
        doc_by_text[t].append(d)

    resolved: list[tuple[_RawRow, str | None, str | None, str]] = []  # row, doc, chunk, how
    pending_dense: list[tuple[int, _RawRow, str]] = []
    for raw in raw_rows:
        doc_id = chunk_id = None
        how = "not_found"
        candidates: list[tuple[str, str]] = []
        if raw.doc_id is not None:
            candidates.append(("doc_id", raw.doc_id))
        elif raw.path is not None:
            candidates.append(("path", raw.path))
        elif raw.text is not None:
            candidates.append(("text", raw.text))
        else:
            candidates += [("doc_id", raw.guess), ("path", raw.guess), ("text", raw.guess)]
        for kind, value in candidates:
            assert value is not None
            if kind == "doc_id":
                docs = catalog.docs_with_id_tail(value)  # an exact id first, then a unique tail
                if len(docs) == 1:
                    doc_id, how = docs[0], "by_doc_id" if docs[0] == value else "by_doc_id_tail"
                elif docs:
                    how = "ambiguous_doc_id"
            elif kind == "path":
                docs = catalog.by_path.get(value) or catalog.by_path.get(_abspath(value))
                if docs and len(docs) == 1:
                    doc_id, how = docs[0], "by_path"
                elif docs:
                    how = "ambiguous_path"
            elif kind == "text":
                norm = match_key(value)
                if norm in chunk_by_text:
                    chunk_id = chunk_by_text[norm]
                    doc_id, how = catalog.chunks[chunk_id].doc_id, "by_text_exact_chunk"
                elif len(doc_by_text.get(norm, ())) == 1:
                    doc_id, how = doc_by_text[norm][0], "by_text_exact_document"
                elif norm:
                    how = "pending_dense"
            if doc_id is not None or (how in AMBIGUOUS and len(candidates) == 1):
                break  # an untyped TSV positive that is ambiguous as an id may still be a path or text
        if how == "pending_dense":
            pending_dense.append((len(resolved), raw, raw.text if raw.text is not None else raw.guess or ""))
        resolved.append((raw, doc_id, chunk_id, how))

    if pending_dense:
        if embedder is None:
            matches: list[tuple[str | None, float]] = [(None, 0.0)] * len(pending_dense)
        else:
            matches = _dense_match(catalog, embedder, [t for _, _, t in pending_dense], threshold)
        for (pos, raw, _), (cid, _score) in zip(pending_dense, matches, strict=True):
            if cid is None:
                resolved[pos] = (raw, None, None, "not_found")
            else:
                resolved[pos] = (raw, catalog.chunks[cid].doc_id, cid, "by_text_dense")

    out: list[TrainQuery] = []
    seen: set[tuple[str, str]] = set()
    used_qids: Counter[str] = Counter()
    for raw, doc_id, chunk_id, how in resolved:
        if doc_id is None:
            stats.add(f"dropped_{how}" if how in AMBIGUOUS else "positive_not_found")
            continue
        key = (normalize_text(raw.query), doc_id)
        if key in seen:
            stats.add("dropped_duplicate")
            continue
        seen.add(key)
        stats.add(how)
        qid = raw.qid or f"line{raw.line}"
        used_qids[qid] += 1
        if used_qids[qid] > 1:
            qid = f"{qid}~{used_qids[qid]}"
        out.append(
            TrainQuery(
                query=raw.query,
                positive_doc_id=doc_id,
                positive_text=None,
                source=f"file:{path.name}",
                qid=qid,
                positive_chunk_id=chunk_id,
            )
        )
    stats.add("kept", len(out))
    return out, stats
