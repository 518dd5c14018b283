"""Indexing files into a collection: load, diff by content hash, prune, write, build the index.

The incremental pipeline behind ``kret index`` and ``Kret.index``. Data flows one way: the indexer's loaders
turn files into documents, this module decides what changed against the collection's document markers, and
``ingest.Ingestor`` chunks, embeds and writes the changed documents crash-consistently. ``Kret`` only wires
the collection, model and settings together and calls :func:`index_files`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kret.engine.collection import Collection
from kret.engine.ingest import IndexSummary, Ingestor
from kret.engine.store import DocState
from kret.engine.types import ProgressFn
from kret.errors import LoaderError
from kret.indexer.document import Document
from kret.indexer.loaders import load_file, load_file_report, skipped_entries, source_types


def no_chunks_entry(doc: Document) -> dict[str, str]:
    """The summary row of a document that has text but gave no chunk (e.g. markdown of headings only).

    Its marker is stored, so an unchanged file is not re-chunked on every run, but it is reported as
    skipped on every run, never counted as added or unchanged: nothing of it can be found by a search.
    """
    label = doc.path if doc.source_type != "jsonl" else f"{doc.path}#{doc.doc_id.rsplit('#', 1)[-1]}"
    return {"path": label, "reason": "no indexable text (0 chunks)"}


def calibration_documents(files: Sequence[tuple[Path, Path]]) -> list[Document]:
    """The first documents of a collection being created, for int8 calibration: at most ``MAX_CALIBRATION``
    documents from at most 200 files, a small cost next to embedding them all."""
    from kret.engine.runtimes.int8 import MAX_CALIBRATION

    docs: list[Document] = []
    for path, _root in files[:200]:
        resolved = path.resolve()
        try:
            docs.extend(load_file(resolved, Path(resolved.anchor)))
        except LoaderError:
            continue
        if len(docs) >= MAX_CALIBRATION:
            break
    return docs


def index_files(
    coll: Collection,
    ingestor: Ingestor,
    files: Sequence[tuple[Path, Path]],
    *,
    prune: bool,
    mirror: bool,
    summary: IndexSummary,
    progress: ProgressFn | None = None,
) -> None:
    """Bring ``coll`` in line with ``files`` (``discover``'s (file, root) pairs), filling ``summary``.

    Steps: load every file (a file that fails is counted and reported, its documents are kept); diff each
    document's content hash against the stored markers (added / updated / unchanged); pick what to remove
    (``mirror``: every document not in ``files``, skipped when a file failed so a read error never empties
    a collection; ``prune``: documents under the given roots whose files are gone); write the changed
    documents through ``ingestor``; count what really landed (an interrupt can stop between two batches);
    delete; build the search index once at the end.
    """
    docs = _load(files, summary, progress)
    states = coll.store.doc_states()
    # Large documents an interrupted run left in parts: resumed below, or pruned with their files.
    pending = coll.store.pending_documents()
    todo = _changed(docs, states, summary)
    gone: list[str] = []
    if mirror and not summary.failed:
        gone = [doc_id for doc_id in {**pending, **states} if doc_id not in docs]
    elif prune:
        gone = _gone_under_roots(files, docs, {**pending, **states})
    if progress:
        progress(stage="embed", total=len(todo))
    try:
        summary.chunks = ingestor.write([d for d, _ in todo], states, progress=progress)
    finally:
        # Count what really landed: an interrupt can stop the run between two batches.
        _count_landed(coll, docs, dict((d.doc_id, kind) for d, kind in todo), states, summary)
    if gone:
        coll.store.delete_documents(gone)
        summary.deleted = len(gone)
    if todo or gone:
        if progress:
            progress(note="building the search index (HNSW)")
        coll.store.finalize()


def _load(
    files: Sequence[tuple[Path, Path]], summary: IndexSummary, progress: ProgressFn | None
) -> dict[str, Document]:
    """Every document of ``files`` by id; a file that fails to load is counted and reported, not fatal."""
    docs: dict[str, Document] = {}
    if progress:
        progress(stage="read", total=len(files))
    for path, _root in files:
        resolved = path.resolve()
        try:
            loaded, problems = load_file_report(resolved, Path(resolved.anchor))
        except LoaderError as exc:
            summary.failed += 1
            summary.failures.append({"path": str(path), "reason": str(exc)})
            loaded, problems = [], []
        summary.skipped.extend(skipped_entries(str(path), loaded, problems))
        for d in loaded:
            docs[d.doc_id] = d
        if progress:
            progress(stage="read", advance=1)
    if not files:
        summary.warnings.append(f"no supported files found ({', '.join(source_types())})")
    return docs


def _changed(
    docs: dict[str, Document], states: dict[str, DocState], summary: IndexSummary
) -> list[tuple[Document, str]]:
    """Documents to write, each with its summary kind ("added" / "updated"); unchanged ones are counted."""
    todo = []
    for doc_id, d in docs.items():
        old = states.get(doc_id)
        if old is None:
            todo.append((d, "added"))
        elif old.doc_hash != d.content_hash:
            todo.append((d, "updated"))
        elif old.n_chunks == 0:
            summary.skipped.append(no_chunks_entry(d))
        else:
            summary.unchanged += 1
    return todo


def _gone_under_roots(
    files: Sequence[tuple[Path, Path]], docs: dict[str, Document], stored: dict[str, DocState]
) -> list[str]:
    """Stored documents under the given folders whose files are no longer there (``--prune``)."""
    roots = sorted({str(r.resolve()) for _, r in files})
    return [
        doc_id
        for doc_id, st in stored.items()
        if doc_id not in docs and any(st.path.startswith(r.rstrip("/") + "/") or st.path == r for r in roots)
    ]


def _count_landed(
    coll: Collection,
    docs: dict[str, Document],
    kinds: dict[str, str],
    states: dict[str, DocState],
    summary: IndexSummary,
) -> None:
    """Count the documents whose new state is stored; warn about large documents stopped part-way."""
    done = coll.store.doc_states() if kinds else states
    for doc_id, kind in kinds.items():
        if doc_id in done and done[doc_id].doc_hash == docs[doc_id].content_hash:
            if done[doc_id].n_chunks == 0:  # stored (its old chunks are gone) but unsearchable
                summary.skipped.append(no_chunks_entry(docs[doc_id]))
            else:
                setattr(summary, kind, getattr(summary, kind) + 1)
    missed = {d for d in kinds if d not in done or done[d].doc_hash != docs[d].content_hash}
    if missed:
        for doc_id, st in coll.store.pending_documents().items():
            if doc_id in missed and st.doc_hash == docs[doc_id].content_hash and st.n_chunks:
                summary.warnings.append(
                    f"{st.path}: large document stopped after {st.n_chunks} chunks; they are kept "
                    "(not searchable yet) and the next `kret index` resumes there"
                )
