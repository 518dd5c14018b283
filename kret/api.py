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
from typing import TYPE_CHECKING, Any

from kret import korean
from kret.engine.collection import (
    Collection,
    build_manifest,
    check_model,
    check_serving,
    open_collection,
    recorded_lexical_text,
    recorded_serving,
)
from kret.engine.embedder import Embedder
from kret.engine.ingest import IndexSummary, Ingestor
from kret.engine.models import ModelInfo, ModelRegistry
from kret.engine.pipeline import calibration_documents, index_files
from kret.engine.search import Searcher, SearchOptions
from kret.engine.sparse import KiwiBM25Encoder
from kret.engine.store import Backend, Store
from kret.engine.types import Hit, ProgressFn, SearchFilter
from kret.errors import EmptyQueryError, KretError, UserInputError
from kret.indexer.chunker import Chunker, ChunkingParams
from kret.indexer.loaders import discover
from kret.settings import Settings, load_settings
from kret.wiring import make_backend, search_options

if TYPE_CHECKING:
    from kret.evaluators.tune import TuneResult
    from kret.langchain import KretRetriever

#: ``collections show`` reads back at most this many chunks' vectors (~150 MB at 384 dimensions).
VECTOR_CHECK_LIMIT = 100_000


def vector_health(coll: Collection, limit: int = VECTOR_CHECK_LIMIT) -> dict[str, Any]:
    """Read stored dense vectors back: present, of the manifest's dimension, finite, not all zero.

    Counts and document markers come from payloads, so a damaged vector file leaves them intact; only
    reading the vectors shows it (as NaN, missing vectors, or a store error on a truncated file).
    """
    import numpy as np

    from kret.errors import StoreError

    dimension = coll.manifest["dimension"]
    checked = bad = 0
    first = ""
    try:
        for point in coll.store.scroll_chunks(with_vectors=True):
            if checked >= limit:
                break
            checked += 1
            vec = None if point.dense is None else np.asarray(point.dense, dtype=np.float64)
            if vec is None or vec.shape != (dimension,) or not np.isfinite(vec).all() or not vec.any():
                bad += 1
                first = first or point.id
    except StoreError as exc:
        return {"ok": False, "checked": checked, "problem": str(exc)}
    out: dict[str, Any] = {"ok": bad == 0, "checked": checked}
    if bad:
        out["problem"] = (
            f"{bad} of {checked} chunk(s) have a missing, wrong-sized or non-finite dense vector "
            f"(first: {first})"
        )
    return out


class Kret:
    """Entry point: settings in, indexes and search results out. Holds loaded models for reuse."""

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        self.settings = settings if settings is not None else load_settings(**overrides)
        self.registry = ModelRegistry(self.settings.models_dir, self.settings.cache_dir)
        self.registry.allow_downloads = self.settings.allow_downloads
        korean.configure(self.settings.kiwi_workers)
        self._backend: Backend | None = None
        self._embedders: dict[tuple[str, str, str, str], Embedder] = {}

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

    def embedder(
        self,
        info: ModelInfo,
        *,
        runtime: str | None = None,
        precision: str | None = None,
        calibration: Any = None,
        calibration_sha: str | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> Embedder:
        """A loaded model, cached per (fingerprint, runtime, precision[, int8 calibration]).

        Runtime and precision default to the settings; opening a collection passes the ones it was built
        with. Loading imports torch only for ``runtime = "torch"`` (or a first OpenVINO export).
        """
        from kret.engine.runtimes import load_embedder

        # Every write and search embeds through here: the recorded fingerprint must match the weights
        # (a stat per file when nothing changed; see ModelRegistry.verify).
        self.registry.verify(info)

        runtime = runtime or self.settings.runtime
        precision = precision or self.settings.precision
        cal = calibration_sha or (calibration.sha256 if calibration is not None else "")
        key = (info.fingerprint, runtime, precision, cal if precision == "int8" else "")
        if key not in self._embedders:
            self._embedders[key] = load_embedder(
                info,
                runtime=runtime,
                precision=precision,
                models_dir=self.settings.models_dir,
                cache_dir=self.settings.cache_dir,
                threads=self.settings.threads,
                batch_size=self.settings.embed_batch_size,
                device=self.settings.device,
                calibration=calibration,
                calibration_sha=calibration_sha,
                progress=progress,
            )
        return self._embedders[key]

    def release_models(self) -> None:
        """Drop the loaded serving models and the shared Kiwi analyser (a next call loads them again).

        Training calls this after mining: the serving copy of the model (~0.5-1 GB with OpenVINO's compiled
        blobs) and Kiwi (~0.5 GB after its first analysis) are not needed while the torch copy trains."""
        self._embedders.clear()
        import gc

        from kret.korean import release_kiwi

        release_kiwi()
        gc.collect()

    def _collection_embedder(self, coll: Collection, info: ModelInfo) -> Embedder:
        """The embedder on the collection's own runtime/precision; an explicit different one is refused."""
        check_serving(
            coll.name,
            coll.manifest,
            self.settings.runtime if self.settings.explicit("runtime") else None,
            self.settings.precision if self.settings.explicit("precision") else None,
        )
        built = recorded_serving(coll.manifest)
        return self.embedder(
            info,
            runtime=built["runtime"],
            precision=built["precision"],
            calibration_sha=(built.get("calibration") or {}).get("sha256"),
        )

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
        except KretError as exc:
            # Same error type (a missing folder stays a ModelError, a broken registry a RegistryError),
            # with the collection's side of the story added; anything else is a bug and keeps its traceback.
            raise type(exc)(
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
            return Searcher(coll, self._collection_embedder(coll, info), self.encoder_for(coll.manifest))
        except BaseException:
            coll.close()
            raise

    def _open_or_create(
        self, name: str, model: str | None, files: list, progress: ProgressFn | None
    ) -> tuple[Collection, ModelInfo, Embedder]:
        """The live collection, or a new one made live at once. The existence check and the creation run
        under the collection's mutation lock, so two processes creating the same name cannot both create a
        version (one run's documents would end up in an orphan)."""
        if self.backend.live_version(name) is None:
            # Resolving may build the default model (~25 s) and calibration reads files: outside the lock.
            note = (lambda msg: progress(note=msg)) if progress else None
            info = self.resolve_model(model, progress=note)
            calibration = None
            if self.settings.precision == "int8":
                from kret.engine.runtimes.int8 import calibration_from_documents

                calibration = calibration_from_documents(calibration_documents(files))
            with self.backend.mutation(name):
                if self.backend.live_version(name) is None:
                    coll = self._create(name, info, progress, calibration)
                    return coll, info, self.embedder(info, calibration=calibration)
        coll = open_collection(self.backend, name)
        try:
            info = self._model_of(coll, model)
            return coll, info, self._collection_embedder(coll, info)
        except BaseException:
            coll.close()
            raise

    def _create(
        self, name: str, info: ModelInfo, progress: ProgressFn | None, calibration: Any = None
    ) -> Collection:
        note = (lambda msg: progress(note=msg)) if progress else None
        emb = self.embedder(info, calibration=calibration, progress=note)
        chunk_tokens = self.settings.chunk_tokens or (emb.max_seq_length - emb.prompt_overhead)
        manifest = build_manifest(
            model=info,
            dimension=emb.dimension,
            prompts=emb.prompts,
            max_seq_length=emb.max_seq_length,
            chunking=ChunkingParams(
                chunk_tokens, min(self.settings.chunk_overlap, chunk_tokens // 2)
            ).as_dict(),
            sparse={
                "k1": self.settings.bm25_k1,
                "b": self.settings.bm25_b,
                "encoder": "kiwi-bm25-v1",
                "text": self.settings.lexical_text,
            },
            serving=emb.serving,
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
            coll, info, emb = self._open_or_create(name, model, files, progress)
            summary = IndexSummary(collection=name, model=info.short)
            rule = recorded_lexical_text(coll.manifest)
            if rule != self.settings.lexical_text:
                # The collection keeps its rule (its BM25 statistics must stay consistent); say how to move it.
                summary.warnings.append(
                    f"collection {name!r} indexes its BM25 text as {rule!r}, not as the lexical_text setting's "
                    f"{self.settings.lexical_text!r}; `kret reindex -c {name} --lexical` moves it "
                    "(Kiwi only, the dense vectors are kept; bench/README.md §2g)"
                )
            try:
                ingestor = Ingestor(
                    coll,
                    emb,
                    self.encoder_for(coll.manifest),
                    self.chunker_for(emb, coll.manifest),
                    batch_tokens=self.settings.embed_batch_tokens,
                    part_chars=self.settings.large_doc_chars,
                )
                index_files(
                    coll, ingestor, files, prune=prune, mirror=mirror, summary=summary, progress=progress
                )
            except KeyboardInterrupt:
                summary.interrupted = True
            finally:
                coll.close()
        summary.seconds = time.perf_counter() - started
        return summary

    # re-indexing with another model ---------------------------------------------------------------------
    def reindex(
        self,
        collection: str | None = None,
        *,
        model: str | None = None,
        lexical: bool = False,
        reader: Searcher | None = None,
        progress: ProgressFn | None = None,
    ) -> dict[str, Any]:
        """Build a new version of a collection from its stored chunks, then switch.

        ``model``: re-embed every chunk with another model. ``lexical``: rebuild the lexical (BM25) vectors
        under the ``lexical_text`` setting's rule — Kiwi only, minutes where re-embedding
        takes hours; the dense vectors are kept unless a model is given too. No file is re-read: chunk
        texts, titles, and the side not being rebuilt come from the live version. Searches keep using the
        live version until the final atomic switch (a pointer swap on Edge, an alias swap on a server); the
        old version stays until ``gc``. Pass ``reader`` when this process already holds the collection open
        (Edge allows one opener).
        """
        if model is None and not lexical:
            raise UserInputError(
                "say what to rebuild: a model to re-embed with (--model) and/or the lexical vectors (--lexical)"
            )
        name = collection or self.settings.collection
        with self.backend.writer(name):
            return self._reindex(name, model, lexical, reader, progress)

    def _reindex(
        self,
        name: str,
        model: str | None,
        lexical: bool,
        reader: Searcher | None,
        progress: ProgressFn | None,
    ) -> dict[str, Any]:
        from kret.engine.ingest import copy_documents, reembed, relex
        from kret.engine.types import StoredPoint

        started = time.perf_counter()
        owned = reader is None
        coll = open_collection(self.backend, name) if reader is None else reader.collection
        try:
            old_version = coll.version
            old_manifest = coll.manifest
            states = coll.store.doc_states()
            points = list(coll.store.scroll_chunks(with_vectors=True))
        finally:
            if owned:
                coll.close()
        by_doc: dict[str, list[StoredPoint]] = {}
        for p in points:
            by_doc.setdefault(p.payload["doc_id"], []).append(p)
        sparse = old_manifest["sparse"]
        lex_lens = None
        if lexical:
            rule = self.settings.lexical_text
            if progress:
                progress(note=f"lexical vectors: Kiwi over {len(points):,} chunks ({rule})")
            by_doc, lex_lens = relex(by_doc, self.encoder_for(old_manifest), rule)
            sparse = {**sparse, "text": rule}
        emb = None
        if model is None:
            manifest = {**old_manifest, "sparse": sparse, "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            model_name = str(old_manifest["model"].get("name", ""))
        else:
            info = self.resolve_model(model)
            calibration = None
            if self.settings.precision == "int8":
                from kret.engine.runtimes.int8 import calibration_from_documents

                calibration = calibration_from_documents(_PointDoc.of(p) for p in points[:2000])
            emb = self.embedder(info, calibration=calibration)
            manifest = build_manifest(
                model=info,
                dimension=emb.dimension,
                prompts=emb.prompts,
                max_seq_length=emb.max_seq_length,
                chunking=old_manifest["chunking"],
                sparse=sparse,
                serving=emb.serving,
            )
            model_name = info.short
        manifest["reindexed_from"] = {"version": old_version, "model": old_manifest["model"]}
        version, store = self.backend.new_version(name)
        try:
            store.create(int(manifest["dimension"]), manifest)
            if progress:
                progress(stage="embed", total=len(by_doc))
            if emb is not None:
                reembed(
                    store,
                    emb,
                    by_doc,
                    states,
                    batch_tokens=self.settings.embed_batch_tokens,
                    lex_lens=lex_lens,
                    progress=progress,
                )
            else:
                copy_documents(store, by_doc, states, lex_lens=lex_lens, progress=progress)
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
            "model": model_name,
            "lexical_text": recorded_lexical_text(manifest),
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
    def search_options(self, **overrides: Any) -> SearchOptions:
        """The options a search is served with: this Kret's settings, then every override that is not None
        (an unknown name raises TypeError); validated."""
        return search_options(self.settings, **overrides)

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
        opts = self.search_options(k=k, mode=mode, **options)
        searcher = self.open(collection, model)
        try:
            return searcher.search(query, opts, filter)
        finally:
            searcher.collection.close()

    # fusion calibration ---------------------------------------------------------------------------------
    def tune(
        self,
        collection: str | None = None,
        *,
        queries: str | Path | None = None,
        dataset: str | Path | None = None,
        split: str = "dev",
        folds: int = 5,
        seed: int = 0,
        store: bool = True,
        force: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> TuneResult:
        """Calibrate a collection's hybrid fusion on labelled queries (``kret tune``).

        ``queries``: a file as ``kret train finetune`` takes; ``dataset``: a BEIR folder (qrels/<split>.tsv)
        whose corpus the collection holds. Returns ``evaluators.tune.TuneResult``; the choice is written to
        the collection's manifest only when its cross-validated gain is significant (or ``force``).
        """
        from kret.evaluators import tune as tuning

        if (queries is None) == (dataset is None):
            raise UserInputError("give labelled queries: either a queries file or a BEIR dataset folder")
        searcher = self.open(collection)
        try:
            if dataset is not None:
                data = tuning.labelled_from_dataset(dataset, split)
            else:
                assert queries is not None  # one of the two, checked above
                data = tuning.labelled_from_queries_file(queries, searcher)
            return tuning.tune_searcher(
                searcher,
                data,
                n_folds=folds,
                seed=seed,
                prefetch_k=self.settings.prefetch_k,
                store=store,
                force=force,
                progress=progress,
            )
        finally:
            searcher.collection.close()

    def reset_tuning(self, collection: str | None = None) -> dict[str, Any] | None:
        """Remove a collection's fusion calibration; returns the removed entry, or None if it had none."""
        from kret.evaluators.tune import reset_tuning

        searcher = self.open(collection)
        try:
            return reset_tuning(searcher)
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

    def collection_info(self, name: str, *, check_vectors: bool = False) -> dict[str, Any]:
        """The manifest and sizes; with ``check_vectors``, also read the stored dense vectors back and
        report under ``"vectors"`` whether they are whole (``kret collections show`` does)."""
        with open_collection(self.backend, name) as coll:
            info = {
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
                "sparse": {**coll.manifest["sparse"], "text": recorded_lexical_text(coll.manifest)},
                "created_at": coll.manifest.get("created_at"),
                **{k: v for k, v in self.version_report(name).items() if k != "live"},
                "fusion": coll.manifest.get("fusion"),
            }
            if check_vectors:
                info["vectors"] = vector_health(coll)
            return info

    def remove_collection(self, name: str) -> None:
        """Drop a collection; the backend refuses a folder kret did not make or one another process uses."""
        if self.backend.live_version(name) is None and not self.backend.versions(name):
            from kret.errors import CollectionNotFoundError

            raise CollectionNotFoundError(f"no collection named {name!r}")
        self.backend.drop(name)

    def as_retriever(self, **kwargs: Any) -> KretRetriever:
        from kret.langchain import KretRetriever

        return KretRetriever.from_kret(self, **kwargs)


def _discard(backend: Backend, name: str, version: str, store: Store) -> None:
    """Remove a version whose build failed, keeping the original error: if closing or dropping fails too
    (the disk is full, another process holds it), the version stays an orphan that
    ``kret collections list`` shows and ``kret gc`` removes. A version another process made (a server shared
    with another machine) is not ours to remove: only this process's claim on it is dropped."""
    with contextlib.suppress(Exception):
        store.close()
    if store.made_elsewhere:
        if backend.locks is not None:
            backend.locks.end_build(name, version)
        return
    with contextlib.suppress(Exception):
        backend.drop_version(name, version)


class _PointDoc:
    """A stored chunk seen as a document (title + text) for int8 calibration during ``reindex``."""

    __slots__ = ("text", "title")

    def __init__(self, title: str, text: str) -> None:
        self.title = title
        self.text = text

    @classmethod
    def of(cls, point: Any) -> _PointDoc:
        return cls(point.payload.get("title", ""), point.payload.get("text", ""))
