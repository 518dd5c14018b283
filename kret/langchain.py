"""LangChain retriever over a kret collection (the ``[langchain]`` extra).

    from kret.langchain import KretRetriever
    retriever = KretRetriever(collection="docs", k=4)          # builds its own Kret from settings
    retriever = Kret().as_retriever(collection="docs", k=4)     # or reuses an existing one
    docs = retriever.invoke("한국의 수도는?", k=2, filter={"source_types": ["md"]})

How it runs
-----------
The engine is synchronous (torch + Qdrant Edge in-process) and opening a collection loads a model (seconds),
so a collection is opened lazily, once, and kept open. Every search of a retriever goes to a *handle*: one
worker thread that owns the open collection (``Searcher``). Callers put requests on its queue and wait on a
future — ``invoke`` blocks on it, ``ainvoke`` awaits it (``asyncio.wrap_future``), so the event loop never
runs a search, a model load or a Qdrant call. The worker takes the first waiting request, collects whatever
else arrives within ``batch_window_ms`` (up to ``max_batch_size``), groups the requests by identical
options and filter, and answers each group with one ``Searcher.search_many`` call: the queries of a group
are embedded in ONE model forward pass, which is where concurrent ``ainvoke``/``abatch``/``batch`` calls
get faster than the same calls one after another. One thread per collection also means the searcher is
never used from two threads at once.

Handles are shared process-wide per index location (KRET_HOME's collections folder, or the Qdrant URL) and
collection name, with a reference count: embedded Qdrant Edge lets a process open a collection only once,
so two retrievers — even built from two different ``Kret`` objects — on the same collection share one open
collection and one loaded model. ``close()`` (or garbage collection of the retriever) drops the reference;
the last one closes the collection.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import json
import numbers
import queue
import threading
import time
import weakref
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kret.errors import EmptyQueryError, ModelError, ModelMismatchError, StoreError, UserInputError

try:
    from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever, LangSmithRetrieverParams
except ImportError as _exc:  # pragma: no cover - exercised through a fresh import in the tests
    raise UserInputError(
        f"the LangChain retriever needs langchain-core ({_exc}); install it with: pip install 'kret[langchain]'"
    ) from None

from pydantic import ConfigDict, Field, PrivateAttr, ValidationError

from kret.api import Kret
from kret.engine.collection import check_model
from kret.engine.search import Searcher, SearchOptions
from kret.engine.types import Hit, SearchFilter
from kret.settings import Settings

__all__ = ["KretRetriever", "to_search_filter"]

_FILTER_KEYS = ("path_prefix", "path_glob", "source_types", "where")
# per-call keyword arguments of invoke/ainvoke/batch/abatch (besides ``filter``)
_OPTION_KEYS = (
    "k",
    "mode",
    "fusion",
    "rrf_k",
    "prefetch_k",
    "dense_weight",
    "sparse_weight",
    "fusion_params",
)
_IGNORED_KWARGS = ("verbose",)  # BaseRetriever.invoke forwards its own ``verbose`` flag; not ours
_CLOSE_TIMEOUT_S = 30.0


# filters -------------------------------------------------------------------------------------------------
def to_search_filter(value: Any) -> SearchFilter | None:
    """A ``SearchFilter`` from what a LangChain user passes as ``filter``.

    Accepted: ``None``; a ``SearchFilter``; a dict with any of ``path_prefix``, ``path_glob``,
    ``source_types`` (a list, or one string) and ``where`` (payload key -> value); or a flat dict of payload
    key -> value, taken as ``where`` (JSONL fields are matched as ``meta.<key>``). Mixing the two forms is
    refused, so a typo such as ``path_prefx`` cannot silently become a payload match.
    """
    if value is None or isinstance(value, SearchFilter):
        return value
    if not isinstance(value, Mapping):
        raise UserInputError(f"filter must be a dict (or a kret SearchFilter), not {type(value).__name__}")
    keys = set(value)
    if any(not isinstance(k, str) for k in keys):
        raise UserInputError("filter keys must be strings")
    structured = keys & set(_FILTER_KEYS)
    if not structured:
        return SearchFilter(where=dict(value)) if value else None
    unknown = keys - set(_FILTER_KEYS)
    if unknown:
        raise UserInputError(
            f"filter mixes structured keys ({', '.join(sorted(structured))}) with other keys "
            f"({', '.join(sorted(unknown))}); put payload matches under 'where'"
        )
    prefix, glob = value.get("path_prefix"), value.get("path_glob")
    for name, v in (("path_prefix", prefix), ("path_glob", glob)):
        if v is not None and not isinstance(v, str | Path):
            raise UserInputError(f"filter {name} must be a string, not {type(v).__name__}")
    types = value.get("source_types") or []
    if isinstance(types, str):
        types = [types]
    if not isinstance(types, list | tuple | set) or not all(isinstance(t, str) for t in types):
        raise UserInputError("filter source_types must be a list of file types such as ['md', 'pdf']")
    where = value.get("where") or {}
    if not isinstance(where, Mapping) or not all(isinstance(k, str) for k in where):
        raise UserInputError("filter where must be a dict of payload key -> value")
    return SearchFilter(
        path_prefix=str(prefix) if prefix is not None else None,
        path_glob=str(glob) if glob is not None else None,
        source_types=list(types),
        where=dict(where),
    )


def _filter_key(flt: SearchFilter | None) -> str:
    if flt is None or flt.is_empty():
        return ""
    return json.dumps(dataclasses.asdict(flt), sort_keys=True, ensure_ascii=False, default=repr)


# documents -----------------------------------------------------------------------------------------------
def _to_document(hit: Hit, collection: str, model: Mapping[str, Any], mode: str) -> Document:
    pl = hit.payload
    metadata = {
        "doc_id": hit.doc_id,
        "chunk_id": hit.chunk_id,
        "path": hit.path,
        "title": hit.title,
        "heading": pl.get("heading", ""),
        "chunk_index": hit.chunk_index,
        "source_type": pl.get("source_type", ""),
        "score": hit.score,
        "rank": hit.rank,
        "mode": mode,
        "branch_scores": {name: {"score": b.score, "rank": b.rank} for name, b in hit.branches.items()},
        "collection": collection,
        "model": {"name": model.get("name"), "fingerprint": model.get("fingerprint")},
        "meta": dict(pl.get("meta") or {}),
    }
    return Document(page_content=hit.text, metadata=metadata, id=hit.chunk_id)


# the shared worker per open collection ---------------------------------------------------------------------
@dataclass(eq=False)
class _Request:
    query: str | None  # None: only open the collection (warm_up)
    opts: SearchOptions
    flt: SearchFilter | None
    group: tuple
    model: str | None  # a model the caller named explicitly: checked once against the collection
    kret: Kret
    window_s: float
    max_batch: int
    future: Future = dataclasses.field(default_factory=Future)


_STOP = object()
_WORKER_PREFIX = "kret-retriever-"


class _Handle:
    """One open collection, one worker thread, shared by every retriever on that collection."""

    def __init__(self, key: tuple, kret: Kret, collection: str, previous: _Handle | None) -> None:
        self.key = key
        self.collection = collection
        self.refs = 0
        self._kret: Kret | None = kret
        self._previous = previous  # the handle this one replaces: its collection must be closed first
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._stopping = False
        self._searcher: Searcher | None = None
        self._verified: set[str] = set()
        self.thread: threading.Thread | None = None
        self.closed = threading.Event()
        self.batches = 0  # search_many calls made (for tests and diagnostics)

    # caller side ---------------------------------------------------------------------------------------
    def submit(self, req: _Request) -> Future | None:
        """Queue a request; None when the handle is shutting down (the caller takes a fresh one)."""
        with self._lock:
            if self._stopping:
                return None
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._run, name=f"{_WORKER_PREFIX}{self.collection}", daemon=True
                )
                self.thread.start()
            self._queue.put(req)
        return req.future

    def stop(self) -> None:
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            started = self.thread is not None
            if started:
                self._queue.put(_STOP)
        if not started:
            self._finish()

    # worker side ---------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            if self._previous is not None:
                self._previous.closed.wait(_CLOSE_TIMEOUT_S)
                self._previous = None
            while True:
                item = self._queue.get()
                if item is _STOP:
                    break
                batch = [item]
                stop = self._collect(batch)
                self._process(batch)
                if stop:
                    break
        finally:
            self._finish()

    def _collect(self, batch: list[_Request]) -> bool:
        """Add what arrives within the first request's window; True when the stop mark was reached."""
        first = batch[0]
        deadline = time.monotonic() + first.window_s
        while len(batch) < first.max_batch:
            left = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                return False
            if item is _STOP:
                return True
            batch.append(item)
        return False

    def _open(self, first: _Request) -> Searcher:
        """Open the collection with the first model that is the collection's own.

        Tried in order: the model the first request names, the Kret's configured model (a local folder, say),
        then the model the collection's manifest names. A request naming another model is refused in
        ``_verify`` without keeping the collection from opening for the others.
        """
        if self._searcher is not None:
            return self._searcher
        kr = self._kret
        assert kr is not None
        candidates: list[str] = []
        for spec in (first.model, kr.settings.model):
            if spec and spec != "default" and spec not in candidates:
                candidates.append(spec)
        errors: list[Exception] = []
        for spec in candidates:
            try:
                self._searcher = kr.open(self.collection, spec)
            except (ModelMismatchError, ModelError) as exc:
                errors.append(exc)
                continue
            self._verified.add(spec)
            return self._searcher
        try:
            self._searcher = kr.open(self.collection, None)
        except (ModelMismatchError, ModelError):
            if errors:
                raise errors[0] from None
            raise
        return self._searcher

    def _verify(self, searcher: Searcher, req: _Request) -> None:
        if req.model is None or req.model in self._verified:
            return
        info = req.kret.resolve_model(req.model)
        check_model(self.collection, searcher.collection.manifest, info)
        self._verified.add(req.model)

    def _process(self, batch: list[_Request]) -> None:
        live = [r for r in batch if r.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            searcher = self._open(live[0])
        except Exception as exc:
            for r in live:
                r.future.set_exception(exc)
            return
        groups: dict[tuple, list[_Request]] = {}
        for r in live:
            try:
                self._verify(searcher, r)
            except Exception as exc:
                r.future.set_exception(exc)
                continue
            if r.query is None:
                r.future.set_result([])
            else:
                groups.setdefault(r.group, []).append(r)
        for reqs in groups.values():
            self._search(searcher, reqs)

    def _search(self, searcher: Searcher, reqs: list[_Request]) -> None:
        opts, flt = reqs[0].opts, reqs[0].flt
        try:
            self.batches += 1
            results = searcher.search_many([r.query for r in reqs], opts, flt)
        except Exception as exc:
            if len(reqs) == 1:
                reqs[0].future.set_exception(exc)
            else:  # give each request its own answer (or its own error)
                for r in reqs:
                    self._search(searcher, [r])
            return
        model = searcher.collection.manifest.get("model", {})
        for r, hits in zip(reqs, results, strict=True):
            try:
                r.future.set_result([_to_document(h, self.collection, model, opts.mode) for h in hits])
            except Exception as exc:  # pragma: no cover - conversion of a well-formed hit does not fail
                r.future.set_exception(exc)

    def _finish(self) -> None:
        searcher, self._searcher = self._searcher, None
        try:
            if searcher is not None:
                searcher.collection.close()
        finally:
            self._kret = None
            while True:  # nothing is queued after the stop mark; this only guards against a lost request
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not _STOP and item.future.set_running_or_notify_cancel():
                    item.future.set_exception(StoreError(f"the retriever on {self.collection!r} was closed"))
            with _REGISTRY_LOCK:
                if _CLOSING.get(self.key) is self:
                    del _CLOSING[self.key]
            self.closed.set()


_REGISTRY_LOCK = threading.Lock()
_HANDLES: dict[tuple, _Handle] = {}
_CLOSING: dict[tuple, _Handle] = {}


def _location(kr: Kret, collection: str) -> tuple:
    s = kr.settings
    if s.server_mode:
        return ("server", s.qdrant_url, collection)
    return ("edge", str(Path(s.collections_dir).expanduser().resolve()), collection)


def _acquire(kr: Kret, collection: str) -> _Handle:
    key = _location(kr, collection)
    with _REGISTRY_LOCK:
        handle = _HANDLES.get(key)
        if handle is None:
            handle = _Handle(key, kr, collection, _CLOSING.get(key))
            _HANDLES[key] = handle
        handle.refs += 1
        return handle


def _release(handle: _Handle, wait: bool) -> None:
    with _REGISTRY_LOCK:
        handle.refs -= 1
        if handle.refs > 0:
            return
        if _HANDLES.get(handle.key) is handle:
            del _HANDLES[handle.key]
        _CLOSING[handle.key] = handle
    handle.stop()
    if wait and threading.current_thread() is not handle.thread:
        handle.closed.wait(_CLOSE_TIMEOUT_S)


class _Lease:
    """A retriever's reference on a handle; released once, by ``close()`` or when the retriever is collected."""

    def __init__(self, handle: _Handle) -> None:
        self.handle: _Handle | None = handle
        self._lock = threading.Lock()

    def release(self, wait: bool = False) -> None:
        with self._lock:
            handle, self.handle = self.handle, None
        if handle is not None:
            _release(handle, wait)


@atexit.register
def _close_all() -> None:
    """At exit, close every open collection — and those already closing — and let each worker thread end.

    A retriever released just before exit (garbage-collected when ``main`` returns) leaves its worker
    closing the collection and dropping the model. Python stops a daemon thread that is still running when
    finalisation starts by unwinding it, and an unwind through native frames (a C++ destructor that released
    the GIL) aborts the process: "terminate called without an active exception", exit 134, after a run that
    had finished its work (bench/load_async.py). So the workers are joined, not only waited for.
    """
    with _REGISTRY_LOCK:
        handles = list(_HANDLES.values())
        _HANDLES.clear()
    for h in handles:
        h.stop()
    deadline = time.monotonic() + _CLOSE_TIMEOUT_S
    # every worker — of the handles just stopped, of those already closing, of one only unwinding — sets its
    # handle's ``closed`` before it ends, so joining the threads is all the waiting needed
    for worker in threading.enumerate():
        if worker.name.startswith(_WORKER_PREFIX) and worker is not threading.current_thread():
            worker.join(max(0.0, deadline - time.monotonic()))


# the retriever -------------------------------------------------------------------------------------------
class KretRetriever(BaseRetriever):
    """LangChain retriever over one kret collection; see docs/langchain.md.

    Build it from settings (``KretRetriever(collection="docs", k=4, home=..., model=...)`` makes its own
    ``Kret``) or from an existing ``Kret`` (``KretRetriever.from_kret(kr, collection="docs")`` or
    ``kr.as_retriever(...)``). ``invoke``/``ainvoke``/``batch``/``abatch`` accept per-call ``k``, ``mode``,
    ``filter`` (and ``fusion``, ``rrf_k``, ``prefetch_k``, ``dense_weight``, ``sparse_weight``,
    ``fusion_params``) keyword arguments. Failures are kret's typed errors (``kret.errors.KretError`` subclasses).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    collection: str | None = None
    """Collection to search; None = the settings' collection (``KRET_COLLECTION``, default 'default')."""
    k: int = 4
    """Documents returned per query."""
    mode: str | None = None
    """'hybrid', 'dense' or 'sparse'; None = the settings' search mode (hybrid by default)."""
    fusion: str | None = None
    """A fusion method of ``kret.engine.fusion.fusion_names()`` ('dbsf', 'rrf', 'adaptive', …) for hybrid
    mode; None = settings, else the collection's calibration (``kret tune``), else the default."""
    rrf_k: int | None = None
    prefetch_k: int | None = None
    dense_weight: float | None = None
    sparse_weight: float | None = None
    fusion_params: dict[str, float] | None = None
    """Parameters of a client-side fusion method (e.g. ``{"bias": 0.3}`` for 'adaptive')."""
    filter: Any = None
    """Default filter (see ``to_search_filter``); a per-call ``filter`` replaces it (``filter={}``: none)."""
    model: str | None = None
    """Model to search with; None = the collection's own model. A different model is refused."""
    home: str | Path | None = None
    """KRET_HOME for the Kret this retriever builds (not with ``kret=``)."""
    settings: Settings | None = Field(default=None, exclude=True, repr=False)
    """Complete settings for the Kret this retriever builds (not with ``kret=`` or ``home=``)."""
    kret: Kret | None = Field(default=None, exclude=True, repr=False)
    """An existing Kret to reuse (its settings and loaded models)."""
    batch_window_ms: float = 2.0
    """How long the worker waits for more concurrent requests to embed together with the first one."""
    max_batch_size: int = 32
    """Most requests answered together."""

    _kr: Kret = PrivateAttr()
    _defaults: SearchOptions = PrivateAttr()
    _default_filter: SearchFilter | None = PrivateAttr(default=None)
    _lease: _Lease | None = PrivateAttr(default=None)
    _finalizer: Any = PrivateAttr(default=None)
    _lease_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}" for err in exc.errors()
            )
            raise UserInputError(f"invalid KretRetriever arguments ({problems})") from None

    def model_post_init(self, context: Any, /) -> None:
        if self.kret is not None:
            if self.home is not None or self.settings is not None:
                raise UserInputError("give KretRetriever either kret= or home=/settings=, not both")
            self._kr = self.kret
        elif self.settings is not None:
            if self.home is not None:
                raise UserInputError("give KretRetriever either settings= or home=, not both")
            self._kr = Kret(self.settings)
        else:
            self._kr = Kret(home=self.home, model=self.model)
        name = self.collection or self._kr.settings.collection
        if not name or not all(c.isalnum() or c in "-_" for c in name):
            raise UserInputError(f"collection name {name!r} may hold only letters, digits, '-' and '_'")
        self.collection = name
        if self.batch_window_ms < 0 or self.max_batch_size < 1:
            raise UserInputError("batch_window_ms must be >= 0 and max_batch_size >= 1")
        self._defaults = self._options({})
        self._default_filter = to_search_filter(self.filter)

    @classmethod
    def from_kret(cls, kret: Kret, **kwargs: Any) -> KretRetriever:
        """A retriever that reuses ``kret``'s settings and loaded models (``Kret.as_retriever`` calls this)."""
        return cls(kret=kret, **kwargs)

    # requests -----------------------------------------------------------------------------------------
    def _options(self, overrides: Mapping[str, Any]) -> SearchOptions:
        values = {key: getattr(self, key) for key in _OPTION_KEYS}
        if overrides.get("fusion") not in (None, self.fusion) and overrides.get("fusion_params") is None:
            values["fusion_params"] = None  # the retriever's parameters belong to its own fusion method
        values.update({key: v for key, v in overrides.items() if v is not None})
        k = values["k"]
        if isinstance(k, bool) or not isinstance(k, numbers.Integral):
            raise UserInputError(f"k must be a whole number, not {k!r}")
        values["k"] = int(k)
        return SearchOptions.from_settings(self._kr.settings, **values)

    def _request(self, query: Any, kwargs: dict[str, Any]) -> _Request:
        if not isinstance(query, str):
            raise UserInputError(f"the query must be a string, not {type(query).__name__}")
        if not query.strip():
            raise EmptyQueryError("the query is empty")
        unknown = set(kwargs) - set(_OPTION_KEYS) - {"filter"} - set(_IGNORED_KWARGS)
        if unknown:
            raise UserInputError(
                f"unknown retriever argument(s) {', '.join(sorted(unknown))} "
                f"(accepted: {', '.join(_OPTION_KEYS)}, filter)"
            )
        opts = (
            self._options({k: v for k, v in kwargs.items() if k in _OPTION_KEYS})
            if kwargs
            else self._defaults
        )
        flt = to_search_filter(kwargs["filter"]) if "filter" in kwargs else self._default_filter
        return _Request(
            query=query,
            opts=opts,
            flt=flt,
            group=(dataclasses.astuple(opts), _filter_key(flt)),
            model=self.model,
            kret=self._kr,
            window_s=self.batch_window_ms / 1000.0,
            max_batch=self.max_batch_size,
        )

    def _lease_handle(self) -> _Handle:
        with self._lease_lock:
            lease = self._lease
            handle = lease.handle if lease is not None else None
            if handle is None:
                handle = _acquire(self._kr, self.collection)
                lease = _Lease(handle)
                self._lease = lease
                self._finalizer = weakref.finalize(self, lease.release)
            return handle

    def _submit(self, query: Any, kwargs: dict[str, Any]) -> Future:
        req = self._request(query, kwargs)
        for _ in range(5):
            future = self._lease_handle().submit(req)
            if future is not None:
                return future
            # close() ran in another thread between taking the handle and queueing: take a fresh one
        raise StoreError(f"could not reach collection {self.collection!r}: it keeps being closed")

    # BaseRetriever ---------------------------------------------------------------------------------------
    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        return self._submit(query, kwargs).result()

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        return await asyncio.wrap_future(self._submit(query, kwargs))

    def _get_ls_params(self, **kwargs: Any) -> LangSmithRetrieverParams:
        params = super()._get_ls_params(**kwargs)
        params["ls_vector_store_provider"] = "qdrant" if self._kr.settings.server_mode else "qdrant-edge"
        params["ls_embedding_provider"] = "kret"
        if self.model:
            params["ls_embedding_model"] = self.model
        return params

    # lifecycle -------------------------------------------------------------------------------------------
    def warm_up(self) -> KretRetriever:
        """Open the collection and load its model now rather than on the first query; returns self."""
        req = _Request(
            query=None,
            opts=self._defaults,
            flt=None,
            group=(),
            model=self.model,
            kret=self._kr,
            window_s=0.0,
            max_batch=1,
        )
        for _ in range(5):
            future = self._lease_handle().submit(req)
            if future is not None:
                future.result()
                return self
        raise StoreError(f"could not reach collection {self.collection!r}: it keeps being closed")

    def close(self) -> None:
        """Release this retriever's hold on the collection; the last holder closes it. A later call reopens."""
        with self._lease_lock:
            lease, self._lease = self._lease, None
            finalizer, self._finalizer = self._finalizer, None
        if finalizer is not None:
            finalizer.detach()
        if lease is not None:
            lease.release(wait=True)

    def __enter__(self) -> KretRetriever:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
