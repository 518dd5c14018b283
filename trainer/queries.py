"""Training queries for hard-negative fine-tuning, tied to documents of an indexed collection.

Mining needs to know, for every query, which document of the collection is its positive: that document's
chunks must never be mined as negatives, and the held-out evaluation scores it as the relevant document.
So every source of queries is resolved against the collection first:

* a file of query -> positive, where the positive is a document id, a file path, or a passage text (matched
  to a chunk or document of the collection: exact text first, then a near-identical dense match);
* self-supervised pairs read from the collection itself: document titles / section headings -> their
  document, and inverse-cloze pairs (one sentence -> the rest of its chunk).

Malformed input lines are a user mistake and raise ``DatasetError`` naming the file and line (a silently
shrunk training set is worse than a clear error). Well-formed rows whose positive is not in the collection
(the collection changed, the text was edited) are *skipped and counted* in ``QueryStats``: that is data
drift, not a broken file, and the counts say how much of the file was usable.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kret.errors import DatasetError, UserInputError
from kret.indexer.clean import clean_text
from kret.indexer.document import Chunk

__all__ = [
    "CollectionCatalog",
    "QueryStats",
    "TrainQuery",
    "load_queries_file",
    "queries_sha256",
    "self_supervised_queries",
    "split_heldout",
]

SELF_SUPERVISED_KINDS = ("titles", "ict")
QUERY_KEYS = ("query", "question", "anchor")
ID_KEYS = ("positive_id", "doc_id")
AMBIGUOUS = ("ambiguous_doc_id", "ambiguous_path")
PATH_KEYS = ("path", "positive_path")
TEXT_KEYS = ("positive", "pos", "passage")
QID_KEYS = ("query_id", "qid", "id", "_id")
DENSE_MATCH_THRESHOLD = 0.95
_MIN_ICT_SENTENCE = 10
_MIN_ICT_REST = 20


@dataclass(frozen=True)
class TrainQuery:
    """One training query and its positive in the collection.

    ``positive_doc_id`` is the collection document the query is about (``None`` only before resolution).
    ``positive_chunk_id`` pins the positive to one chunk; without it mining uses the document's chunk that
    the model scores highest for the query. ``positive_text``, when set, is the passage trained on instead
    of the stored chunk: inverse-cloze pairs need it, because the stored chunk contains the query sentence
    verbatim and would teach copying.
    """

    query: str
    positive_doc_id: str | None
    positive_text: str | None
    source: str
    qid: str = ""
    positive_chunk_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class QueryStats:
    """Where the input rows went; ``counts`` keys are stable for reports and lineage."""

    source: str
    counts: dict[str, int] = field(default_factory=dict)
    file_sha256: str | None = None

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "file_sha256": self.file_sha256, "counts": dict(self.counts)}


def normalize_text(text: str) -> str:
    """Same cleaning as the loaders, whitespace runs as one space: equal-looking queries compare equal."""
    return " ".join(clean_text(unicodedata.normalize("NFC", text or "")).split())


def match_key(text: str) -> str:
    """The form positives are matched on: cleaned, *all* whitespace removed.

    Removing rather than collapsing whitespace is deliberate: the chunker cuts over-long sentences at token
    boundaries, sometimes inside a word, so a document rebuilt from its chunks can differ from the original
    text only by a line break inside a word.
    """
    return "".join(clean_text(unicodedata.normalize("NFC", text or "")).split())


# ---------------------------------------------------------------------------------------------------------
# The collection as the trainer sees it
# ---------------------------------------------------------------------------------------------------------


@dataclass
class ChunkRecord:
    id: str
    doc_id: str
    chunk_index: int
    text: str
    title: str = ""
    heading: str = ""
    path: str = ""
    meta: dict[str, Any] = field(default_factory=dict)  # the document's metadata (JSONL extra fields...)

    @property
    def embed_text(self) -> str:
        """Exactly what the engine embedded for this chunk (title/heading in front), so training matches."""
        return Chunk(
            doc_id=self.doc_id,
            chunk_index=self.chunk_index,
            text=self.text,
            title=self.title,
            heading=self.heading,
        ).embed_text


class CollectionCatalog:
    """Every chunk of one collection version, grouped by document, read once with ``scroll_chunks``.

    Vectors are not kept here (a big collection's vectors may not fit in memory twice); callers that need
    some of them stream the store again with ``vectors_for``.
    """

    def __init__(self, chunks: Iterable[ChunkRecord], store: Any = None) -> None:
        self.store = store
        self.chunks: dict[str, ChunkRecord] = {}
        by_doc: dict[str, list[ChunkRecord]] = defaultdict(list)
        for c in chunks:
            self.chunks[c.id] = c
            by_doc[c.doc_id].append(c)
        self.by_doc: dict[str, list[ChunkRecord]] = {
            d: sorted(cs, key=lambda c: c.chunk_index) for d, cs in sorted(by_doc.items())
        }
        self.by_path: dict[str, list[str]] = defaultdict(list)
        for doc_id, cs in self.by_doc.items():
            if cs[0].path:
                self.by_path[cs[0].path].append(doc_id)
        self._doc_plain: dict[str, str] | None = None
        self._by_id_tail: dict[str, list[str]] | None = None

    def docs_with_id_tail(self, value: str) -> list[str]:
        """Documents whose id ends with ``value`` at a ``/`` or ``#`` boundary.

        Document ids carry the indexed path (``home/me/corpus/data.jsonl#3228``), but a user's query file
        names a document the way they know it: the JSONL row id (``3228``), the file (``data.jsonl#3228``)
        or an absolute path. Callers accept a tail only when exactly one document has it.
        """
        if self._by_id_tail is None:
            tails: dict[str, list[str]] = defaultdict(list)
            for doc_id in self.by_doc:
                for pos, ch in enumerate(doc_id):
                    if ch in "/#":
                        tails[doc_id[pos + 1 :]].append(doc_id)
            self._by_id_tail = tails
        value = value.lstrip("/")
        return [value] if value in self.by_doc else list(self._by_id_tail.get(value, ()))

    @classmethod
    def from_store(cls, store: Any) -> CollectionCatalog:
        records = []
        for p in store.scroll_chunks(with_vectors=False):
            pl = p.payload
            records.append(
                ChunkRecord(
                    id=str(p.id),
                    doc_id=str(pl.get("doc_id", "")),
                    chunk_index=int(pl.get("chunk_index", 0)),
                    text=str(pl.get("text", "")),
                    title=str(pl.get("title", "") or ""),
                    heading=str(pl.get("heading", "") or ""),
                    path=str(pl.get("path", "") or ""),
                    meta=dict(pl.get("meta") or {}),
                )
            )
        return cls(records, store)

    def __len__(self) -> int:
        return len(self.chunks)

    @property
    def doc_ids(self) -> list[str]:
        return list(self.by_doc)

    def doc_title(self, doc_id: str) -> str:
        return self.by_doc[doc_id][0].title

    def doc_text(self, doc_id: str, *, headings: bool = True) -> str:
        """The document rebuilt from its chunks in order, with the chunk overlap removed.

        With ``headings`` each section's heading is written back as a ``# heading`` line, which the chunker
        reads as a section break for any source type, so re-indexing the text gives the same sections.
        """
        out = ""
        prev: ChunkRecord | None = None
        for c in self.by_doc[doc_id]:
            text = c.text
            new_section = prev is None or c.heading != prev.heading
            if new_section:
                head = f"# {c.heading}\n" if headings and c.heading else ""
                out += ("\n\n" if out else "") + head + text
            else:
                assert prev is not None
                cut = _overlap(prev.text, text)
                out += text[cut:] if cut else "\n" + text
            prev = c
        return out

    def plain_doc_texts(self) -> dict[str, str]:
        """Match keys of the document texts (no heading markup), for exact whole-document matching."""
        if self._doc_plain is None:
            self._doc_plain = {d: match_key(self.doc_text(d, headings=False)) for d in self.by_doc}
        return self._doc_plain

    def vectors_for(self, ids: Iterable[str]) -> dict[str, np.ndarray]:
        """Stored dense vectors (unit length: the collection uses cosine) of the wanted chunk ids."""
        wanted = set(ids)
        out: dict[str, np.ndarray] = {}
        if not wanted or self.store is None:
            return out
        for p in self.store.scroll_chunks(with_vectors=True):
            pid = str(p.id)
            if pid in wanted and p.dense is not None:
                out[pid] = _unit(np.asarray(p.dense, dtype=np.float32))
                if len(out) == len(wanted):
                    break
        return out


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def _overlap(prev: str, nxt: str, probe: int = 8) -> int:
    """Length of the longest suffix of ``prev`` that is a prefix of ``nxt`` (the chunker's overlap).

    The chunker carries whole trailing units (paragraphs, sentences, hard-cut pieces) into the next chunk,
    so a real overlap is at least a short sentence long; shorter coincidences (``…하야시 다`` + ``다스가``)
    are not overlaps, hence the probe of a few characters.
    """
    if not prev or not nxt:
        return 0
    head = nxt[: min(probe, len(nxt))]
    start = prev.find(head)
    while start != -1:
        tail = prev[start:]
        if len(tail) >= len(head) and nxt.startswith(tail):
            return len(tail)
        start = prev.find(head, start + 1)
    return 0


# ---------------------------------------------------------------------------------------------------------
# Queries from a file
# ---------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------
# Self-supervised queries
# ---------------------------------------------------------------------------------------------------------


def self_supervised_queries(
    catalog: CollectionCatalog, kind: str, *, seed: int = 0, max_queries: int | None = 20000
) -> tuple[list[TrainQuery], QueryStats]:
    """Queries read from the collection itself, deterministic for a seed, at most ``max_queries``.

    ``titles``: a document title -> the document, and "title heading" -> the section's first chunk. A title
    shared by several documents is dropped (which one would be the positive? the others would be mined as
    "negatives" although they are about the same thing). ``ict`` (inverse cloze): one sentence of a chunk
    -> the rest of that chunk, so the pair does not reward copying the sentence back.
    """
    if kind not in SELF_SUPERVISED_KINDS:
        raise UserInputError(
            f"unknown self-supervised source {kind!r} (choose {' or '.join(SELF_SUPERVISED_KINDS)})"
        )
    stats = QueryStats(source=f"self-supervised:{kind}")
    stats.add("chunks", len(catalog))
    stats.add("documents", len(catalog.by_doc))
    if kind == "titles":
        out = _title_queries(catalog, stats)
        rng = random.Random(seed)
        rng.shuffle(out)
        if max_queries is not None and len(out) > max_queries:
            stats.add("capped", len(out) - max_queries)
            out = out[:max_queries]
    else:
        out = _ict_queries(catalog, stats, seed=seed, max_queries=max_queries)
    stats.add("kept", len(out))
    return out, stats


def _title_queries(catalog: CollectionCatalog, stats: QueryStats) -> list[TrainQuery]:
    cands: list[TrainQuery] = []
    for doc_id, chunks in catalog.by_doc.items():
        title = chunks[0].title.strip()
        if title:
            cands.append(TrainQuery(title, doc_id, None, "titles", f"title:{doc_id}"))
        else:
            stats.add("documents_without_title")
        seen_headings: set[str] = set()
        for c in chunks:
            heading = c.heading.strip()
            if not heading or heading in seen_headings or heading == title:
                continue
            seen_headings.add(heading)
            query = f"{title} {heading}".strip()
            cands.append(
                TrainQuery(query, doc_id, None, "headings", f"heading:{c.id}", positive_chunk_id=c.id)
            )
    by_query: dict[str, set[str]] = defaultdict(set)
    for q in cands:
        by_query[normalize_text(q.query)].add(q.positive_doc_id or "")
    out: list[TrainQuery] = []
    seen: set[str] = set()
    for q in cands:
        norm = normalize_text(q.query)
        if len(by_query[norm]) > 1:
            stats.add("dropped_ambiguous_title")
            continue
        if norm in seen:
            stats.add("dropped_duplicate")
            continue
        seen.add(norm)
        out.append(q)
    stats.add("titles", sum(1 for q in out if q.source == "titles"))
    stats.add("headings", sum(1 for q in out if q.source == "headings"))
    return out


def _ict_queries(
    catalog: CollectionCatalog, stats: QueryStats, *, seed: int, max_queries: int | None
) -> list[TrainQuery]:
    from kret.korean import get_kiwi

    order = list(catalog.chunks.values())
    order.sort(key=lambda c: (c.doc_id, c.chunk_index))
    random.Random(seed).shuffle(order)
    kiwi = get_kiwi()
    out: list[TrainQuery] = []
    seen: set[str] = set()
    step = 256
    for start in range(0, len(order), step):
        if max_queries is not None and len(out) >= max_queries:
            stats.add("capped", len(order) - start)
            break
        part = order[start : start + step]
        sentences = kiwi.split_into_sents([c.text for c in part])
        for c, sents in zip(part, sentences, strict=True):
            if max_queries is not None and len(out) >= max_queries:
                stats.add("capped")
                continue
            usable = [s for s in sents if len(s.text.strip()) >= _MIN_ICT_SENTENCE]
            if len(sents) < 2 or not usable:
                stats.add("chunks_too_short")
                continue
            rng = random.Random(f"{seed}:{c.id}")
            s = usable[rng.randrange(len(usable))]
            rest = " ".join((c.text[: s.start] + " " + c.text[s.end :]).split())
            sentence = " ".join(s.text.split())
            if len(rest) < _MIN_ICT_REST:
                stats.add("chunks_too_short")
                continue
            if sentence in seen:
                stats.add("dropped_duplicate")
                continue
            seen.add(sentence)
            passage = Chunk(c.doc_id, c.chunk_index, rest, title=c.title, heading=c.heading).embed_text
            out.append(TrainQuery(sentence, c.doc_id, passage, "ict", f"ict:{c.id}", positive_chunk_id=c.id))
    return out


# ---------------------------------------------------------------------------------------------------------
# Held-out split
# ---------------------------------------------------------------------------------------------------------


def split_heldout(
    queries: Sequence[TrainQuery], fraction: float = 0.1, seed: int = 0
) -> tuple[list[TrainQuery], list[TrainQuery]]:
    """Split into (train, held-out), deterministically for a seed, by positive *document*.

    Splitting by document rather than by query keeps a held-out document from being a training positive
    of a sibling query (KorQuAD has ~5 questions per paragraph): otherwise the held-out score would measure
    memorised documents. Training queries whose text equals a held-out query are also removed, so the
    held-out part is never trained on. At least one query lands on each side when ``fraction`` > 0.
    """
    if not 0 <= fraction < 1:
        raise UserInputError(f"held-out fraction must be in [0, 1), got {fraction}")
    queries = list(queries)
    if fraction == 0 or len(queries) < 2:
        return queries, []
    groups: dict[str, list[int]] = defaultdict(list)
    for i, q in enumerate(queries):
        groups[q.positive_doc_id or f"\0{q.qid}"].append(i)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    target = max(1, round(fraction * len(queries)))
    held: set[int] = set()
    for key in keys:
        if len(held) >= target:
            break
        if len(held) + len(groups[key]) >= len(queries):  # keep something to train on
            continue
        held.update(groups[key])
    heldout = [q for i, q in enumerate(queries) if i in held]
    held_texts = {normalize_text(q.query) for q in heldout}
    train = [q for i, q in enumerate(queries) if i not in held and normalize_text(q.query) not in held_texts]
    return train, heldout


def queries_sha256(queries: Iterable[TrainQuery]) -> str:
    """Hash of the resolved query list, so a lineage names exactly what was trained and held out."""
    h = hashlib.sha256()
    for q in queries:
        h.update(json.dumps(q.as_dict(), ensure_ascii=False, sort_keys=True).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()
