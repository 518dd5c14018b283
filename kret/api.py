"""The Python API: everything the CLI does, callable from a script or a notebook.

    from kret.api import Kret
    kr = Kret()
    kr.index(["docs/"])
    hits = kr.search("한국의 수도는?")

The CLI is a thin layer over this class; so are the LangChain retriever, ``kret eval`` and the trainer.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kret.engine.collection import Collection, build_manifest, check_model, make_backend, open_collection
from kret.engine.embedder import Embedder
from kret.engine.ingest import IndexSummary, Ingestor
from kret.engine.models import ModelInfo, ModelRegistry
from kret.engine.search import Searcher, SearchOptions
from kret.engine.sparse import KiwiBM25Encoder
from kret.engine.store import Backend
from kret.engine.types import Hit, SearchFilter
from kret.errors import EmptyQueryError, LoaderError, ModelMismatchError
from kret.indexer.chunker import Chunker, ChunkingParams
from kret.indexer.document import Document
from kret.indexer.loaders import discover, load_file
from kret.settings import Settings, load_settings

ProgressFn = Callable[..., None]


class Kret:
    """Entry point: settings in, indexes and search results out. Holds loaded models for reuse."""

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        self.settings = settings if settings is not None else load_settings(**overrides)
        self.registry = ModelRegistry(self.settings.models_dir, self.settings.cache_dir)
        self._backend: Backend | None = None
        self._embedders: dict[str, Embedder] = {}

    # plumbing -------------------------------------------------------------------------------------------
    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = make_backend(self.settings)
        return self._backend

    def resolve_model(
        self, spec: str | None = None, progress: Callable[[str], None] | None = None
    ) -> ModelInfo:
        return self.registry.resolve(spec or self.settings.model, progress=progress)

    def embedder(self, info: ModelInfo) -> Embedder:
        # Every write and search embeds through here: the recorded fingerprint must match the weights
        # (a stat per file when nothing changed; see ModelRegistry.verify).
        self.registry.verify(info)
        if info.fingerprint not in self._embedders:
            self._embedders[info.fingerprint] = Embedder(
                info,
                device=self.settings.device,
                batch_size=self.settings.embed_batch_size,
                torch_threads=self.settings.torch_threads,
            )
        return self._embedders[info.fingerprint]

    @staticmethod
    def encoder_for(manifest: dict[str, Any]) -> KiwiBM25Encoder:
        sp = manifest.get("sparse", {})
        return KiwiBM25Encoder(k1=sp.get("k1", 1.2), b=sp.get("b", 0.75))

    def chunker_for(self, embedder: Embedder, manifest: dict[str, Any]) -> Chunker:
        params = ChunkingParams(**manifest["chunking"])
        return Chunker(embedder.count_tokens, params, embedder.token_offsets)

    def _model_of(self, coll: Collection, requested: str | None) -> ModelInfo:
        """The collection's own model; an explicitly requested different one is refused."""
        built = coll.manifest["model"]
        if requested:
            info = self.resolve_model(requested)
            check_model(coll.name, coll.manifest, info)
            return info
        try:
            info = self.registry.resolve(built.get("source") or built["name"])
        except Exception as exc:
            raise ModelMismatchError(
                f"collection {coll.name!r} was built with model {built['name']} ({built['fingerprint'][:12]}), "
                f"which cannot be loaded here: {exc}"
            ) from None
        check_model(coll.name, coll.manifest, info)
        return info

    def open(self, collection: str | None = None, model: str | None = None) -> Searcher:
        """An open collection ready for many searches; close it with ``searcher.collection.close()``."""
        coll = open_collection(self.backend, collection or self.settings.collection)
        try:
            info = self._model_of(coll, model)
            return Searcher(coll, self.embedder(info), self.encoder_for(coll.manifest))
        except BaseException:
            coll.close()
            raise

    def _open_or_create(
        self, name: str, model: str | None, progress: ProgressFn | None
    ) -> tuple[Collection, ModelInfo]:
        """The live collection, or a new one made live at once. The existence check and the creation run
        under the collection's mutation lock, so two processes creating the same name cannot both create a
        version (one run's documents would end up in an orphan)."""
        if self.backend.live_version(name) is None:
            # Resolving may build the default model (~25 s): outside the lock.
            info = self.resolve_model(model, progress=(lambda msg: progress(note=msg)) if progress else None)
            with self.backend.mutation(name):
                if self.backend.live_version(name) is None:
                    return self._create(name, info), info
        coll = open_collection(self.backend, name)
        try:
            return coll, self._model_of(coll, model)
        except BaseException:
            coll.close()
            raise

    def _create(self, name: str, info: ModelInfo) -> Collection:
        emb = self.embedder(info)
        chunk_tokens = self.settings.chunk_tokens or (emb.max_seq_length - emb.prompt_overhead)
        manifest = build_manifest(
            model=info,
            dimension=emb.dimension,
            prompts=emb.prompts,
            max_seq_length=emb.max_seq_length,
            chunking=ChunkingParams(
                chunk_tokens, min(self.settings.chunk_overlap, chunk_tokens // 2)
            ).as_dict(),
            sparse={"k1": self.settings.bm25_k1, "b": self.settings.bm25_b, "encoder": "kiwi-bm25-v1"},
        )
        version, store = self.backend.new_version(name)
        try:
            store.create(emb.dimension, manifest)
        except BaseException:
            _discard(self.backend, name, version, store)
            raise
        self.backend.activate(name, version)
        return Collection(name, version, store, manifest)

    # indexing -------------------------------------------------------------------------------------------
    def index(
        self,
        paths: Sequence[str | Path],
        *,
        collection: str | None = None,
        model: str | None = None,
        prune: bool = False,
        mirror: bool = False,
        progress: ProgressFn | None = None,
    ) -> IndexSummary:
        """Index files and folders incrementally: unchanged documents are skipped by content hash.

        ``prune`` removes documents whose files are gone from the given folders. ``mirror`` makes the
        collection hold exactly what ``paths`` contain, removing every other document (skipped when a file
        failed to load, so a read error never empties a collection): the evaluator uses it, because document
        ids carry the file's location and a moved dataset would otherwise be indexed twice.
        """
        started = time.perf_counter()
        name = collection or self.settings.collection
        files = discover([Path(p) for p in paths])
        # One writer per collection: a reindex switching away from the version this run writes into (or a
        # second index creating it) would lose documents silently; the second writer gets "in use".
        with self.backend.writer(name):
            coll, info = self._open_or_create(name, model, progress)
            summary = IndexSummary(collection=name, model=info.short)
            try:
                self._index_into(coll, info, files, prune, mirror, summary, progress)
            except KeyboardInterrupt:
                summary.interrupted = True
            finally:
                coll.close()
        summary.seconds = time.perf_counter() - started
        return summary

    def _index_into(self, coll, info, files, prune, mirror, summary: IndexSummary, progress) -> None:
        emb = self.embedder(info)
        docs: dict[str, Document] = {}
        if progress:
            progress(stage="read", total=len(files))
        for path, _root in files:
            resolved = path.resolve()
            try:
                loaded = load_file(resolved, Path(resolved.anchor))
            except LoaderError as exc:
                summary.failed += 1
                summary.failures.append({"path": str(path), "reason": str(exc)})
                loaded = []
            for d in loaded:
                docs[d.doc_id] = d
            if progress:
                progress(stage="read", advance=1)
        if not files:
            summary.warnings.append("no supported files found (txt, md, html, pdf, docx, hwp, hwpx, jsonl)")
        states = coll.store.doc_states()
        todo = []
        for doc_id, d in docs.items():
            old = states.get(doc_id)
            if old is None:
                todo.append((d, "added"))
            elif old.doc_hash != d.content_hash:
                todo.append((d, "updated"))
            else:
                summary.unchanged += 1
        gone: list[str] = []
        if mirror and not summary.failed:
            gone = [doc_id for doc_id in states if doc_id not in docs]
        elif prune:
            roots = sorted({str(r.resolve()) for _, r in files})
            for doc_id, st in states.items():
                if doc_id not in docs and any(
                    st.path.startswith(r.rstrip("/") + "/") or st.path == r for r in roots
                ):
                    gone.append(doc_id)
        kinds = {d.doc_id: kind for d, kind in todo}
        if progress:
            progress(stage="embed", total=len(todo))
        ingestor = Ingestor(
            coll,
            emb,
            self.encoder_for(coll.manifest),
            self.chunker_for(emb, coll.manifest),
            batch_chunks=self.settings.embed_batch_size * 4,
        )
        try:
            summary.chunks = ingestor.write([d for d, _ in todo], states, progress=progress)
        finally:
            # Count what really landed: an interrupt can stop the run between two batches.
            done = coll.store.doc_states() if todo else states
            for doc_id, kind in kinds.items():
                if doc_id in done and done[doc_id].doc_hash == docs[doc_id].content_hash:
                    setattr(summary, kind, getattr(summary, kind) + 1)
        if gone:
            coll.store.delete_documents(gone)
            summary.deleted = len(gone)
        if todo or gone:
            if progress:
                progress(note="building the search index (HNSW)")
            coll.store.finalize()

    # re-indexing with another model ---------------------------------------------------------------------
    def reindex(
        self,
        collection: str | None = None,
        *,
        model: str,
        reader: Searcher | None = None,
        progress: ProgressFn | None = None,
    ) -> dict[str, Any]:
        """Build a new version of a collection with another model from its stored chunks, then switch.

        No file is re-read: chunk texts, titles and lexical vectors come from the live version (the lexical
        side does not depend on the model). Searches keep using the live version until the final atomic
        switch (a pointer swap on Edge, an alias swap on a server); the old version stays until ``gc``.
        Pass ``reader`` when this process already holds the collection open (Edge allows one opener).
        """

        name = collection or self.settings.collection
        with self.backend.writer(name):
            return self._reindex(name, model, reader, progress)

    def _reindex(
        self, name: str, model: str, reader: Searcher | None, progress: ProgressFn | None
    ) -> dict[str, Any]:
        from kret.engine.store import DocumentWrite
        from kret.engine.types import StoredPoint
        from kret.indexer.document import Chunk

        started = time.perf_counter()
        owned = reader is None
        coll = open_collection(self.backend, name) if owned else reader.collection
        try:
            old_version = coll.version
            old_manifest = coll.manifest
            states = coll.store.doc_states()
            points = list(coll.store.scroll_chunks(with_vectors=True))
        finally:
            if owned:
                coll.close()
        info = self.resolve_model(model)
        emb = self.embedder(info)
        manifest = build_manifest(
            model=info,
            dimension=emb.dimension,
            prompts=emb.prompts,
            max_seq_length=emb.max_seq_length,
            chunking=old_manifest["chunking"],
            sparse=old_manifest["sparse"],
        )
        manifest["reindexed_from"] = {"version": old_version, "model": old_manifest["model"]}
        version, store = self.backend.new_version(name)
        try:
            store.create(emb.dimension, manifest)
            by_doc: dict[str, list[StoredPoint]] = {}
            for p in points:
                by_doc.setdefault(p.payload["doc_id"], []).append(p)
            if progress:
                progress(stage="embed", total=len(by_doc))
            doc_ids = sorted(by_doc)
            batch = max(self.settings.embed_batch_size * 4, 16)
            i = 0
            while i < len(doc_ids):
                group, size = [], 0
                while i < len(doc_ids) and size < batch:
                    group.append(doc_ids[i])
                    size += len(by_doc[doc_ids[i]])
                    i += 1
                chunk_points = [
                    p for d in group for p in sorted(by_doc[d], key=lambda p: p.payload["chunk_index"])
                ]
                texts = [
                    Chunk(
                        p.payload["doc_id"],
                        p.payload["chunk_index"],
                        p.payload.get("text", ""),
                        p.payload.get("title", ""),
                        p.payload.get("heading", ""),
                    ).embed_text
                    for p in chunk_points
                ]
                dense = emb.encode_passages(texts)
                fresh = {
                    p.id: StoredPoint(p.id, dense[j].tolist(), p.sparse, p.payload)
                    for j, p in enumerate(chunk_points)
                }
                writes = []
                for d in group:
                    st = states.get(d)
                    writes.append(
                        DocumentWrite(
                            d,
                            st.doc_hash if st else "",
                            st.path if st else by_doc[d][0].payload.get("path", ""),
                            [fresh[p.id] for p in by_doc[d]],
                            lex_len=st.lex_len if st else 0,
                        )
                    )
                store.write_documents(writes)
                if progress:
                    progress(stage="embed", advance=len(group), chunks=len(chunk_points))
            store.finalize()
        except BaseException:
            _discard(self.backend, name, version, store)
            raise
        store.close()
        self.backend.activate(name, version)
        return {
            "collection": name,
            "old_version": old_version,
            "new_version": version,
            "model": info.short,
            "documents": len(by_doc),
            "chunks": len(points),
            "seconds": round(time.perf_counter() - started, 2),
        }

    def gc(
        self, collection: str | None = None, *, include_eval: bool = False, skipped: list[str] | None = None
    ) -> list[str]:
        """Drop versions that are not live: old ones kept after ``reindex`` (so a rollback stays possible)
        and orphans left by a crash, a full disk or an interrupted first index; with ``include_eval``, also
        the cached collections ``kret eval`` built. Versions a running process is building or holds open
        are skipped (and listed in ``skipped`` when given), never deleted under it."""
        from kret.errors import IndexInUseError

        skipped = skipped if skipped is not None else []
        removed = []
        names = [collection] if collection else self.backend.stored_names()
        for name in names:
            try:
                if include_eval and name.startswith("eval-") and not collection:
                    self.backend.drop(name)
                    removed.append(name)
                    continue
                with self.backend.mutation(name):
                    live = self.backend.live_version(name)
                    for version in self.backend.versions(name):
                        if version == live:
                            continue
                        if self.backend.is_building(name, version):
                            skipped.append(f"{name}/{version} (being built by a running kret process)")
                            continue
                        try:
                            self.backend.drop_version(name, version)
                        except IndexInUseError as exc:
                            skipped.append(f"{name}/{version} ({exc})")
                            continue
                        removed.append(f"{name}/{version}")
            except IndexInUseError as exc:
                skipped.append(f"{name} ({exc})")
        return removed

    def version_report(self, name: str) -> dict[str, Any]:
        """A collection's versions by what they are: live, old (kept for rollback), being built, or orphans
        (newer than the live one, or with no live one, and no process building them: left by a crash, a
        full disk or an interrupted first run). gc removes old versions and orphans."""
        live = self.backend.live_version(name)
        live_n = int(live[1:]) if live else None
        report: dict[str, Any] = {"live": live, "old_versions": [], "building": [], "orphans": []}
        for version in self.backend.versions(name):
            if version == live:
                continue
            if self.backend.is_building(name, version):
                report["building"].append(version)
            elif live_n is not None and int(version[1:]) < live_n:
                report["old_versions"].append(version)
            else:
                report["orphans"].append(version)
        if report["old_versions"] or report["orphans"]:
            report["remove_with"] = f"kret gc -c {name}"
        return report

    # searching ------------------------------------------------------------------------------------------
    def search(
        self,
        query: str,
        k: int = 10,
        *,
        collection: str | None = None,
        model: str | None = None,
        mode: str | None = None,
        filter: SearchFilter | None = None,
        **options: Any,
    ) -> list[Hit]:
        """One-off search (opens and closes the collection); use ``open()`` for many queries."""
        if not query or not query.strip():
            raise EmptyQueryError("the query is empty")
        opts = SearchOptions.from_settings(self.settings, k=k, mode=mode, **options)
        searcher = self.open(collection, model)
        try:
            return searcher.search(query, opts, filter)
        finally:
            searcher.collection.close()

    # collections ----------------------------------------------------------------------------------------
    def collections(self) -> list[dict[str, Any]]:
        """Every collection's info; one held open by another process is listed with ``in_use`` only.

        Listing must not fail because an index or eval run is busy with one collection (Edge allows one
        process per index).
        """
        from kret.errors import IndexInUseError

        out = []
        live = set(self.backend.list_collections())
        for name in self.backend.stored_names():
            if name not in live:
                # Only versions, none live: a first index that crashed before its switch.
                out.append({"name": name, "version": None, **self.version_report(name)})
                continue
            try:
                out.append(self.collection_info(name))
            except IndexInUseError:
                out.append(
                    {"name": name, "version": self.backend.live_version(name), "in_use": True}
                    | self.version_report(name)
                )
        return out

    def collection_info(self, name: str) -> dict[str, Any]:
        with open_collection(self.backend, name) as coll:
            return {
                "name": name,
                "version": coll.version,
                "versions": self.backend.versions(name),
                "backend": self.backend.kind,
                "chunks": coll.store.count_chunks(),
                "documents": len(coll.store.doc_states()),
                "model": coll.manifest["model"],
                "dimension": coll.manifest["dimension"],
                "chunking": coll.manifest["chunking"],
                "prompts": coll.manifest["prompts"],
                "created_at": coll.manifest.get("created_at"),
                **{k: v for k, v in self.version_report(name).items() if k != "live"},
            }

    def remove_collection(self, name: str) -> None:
        """Drop a collection; the backend refuses a folder kret did not make or one another process uses."""
        if self.backend.live_version(name) is None and not self.backend.versions(name):
            from kret.errors import CollectionNotFoundError

            raise CollectionNotFoundError(f"no collection named {name!r}")
        self.backend.drop(name)

    def as_retriever(self, **kwargs: Any):
        from kret.langchain import KretRetriever

        return KretRetriever.from_kret(self, **kwargs)


def _discard(backend: Backend, name: str, version: str, store: Any) -> None:
    """Remove a version whose build failed, keeping the original error: if closing or dropping fails too
    (the disk is full, another process holds it), the version stays an orphan that
    ``kret collections list`` shows and ``kret gc`` removes."""
    with contextlib.suppress(Exception):
        store.close()
    with contextlib.suppress(Exception):
        backend.drop_version(name, version)
