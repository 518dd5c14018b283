"""One worker thread per open collection that answers concurrent searches in micro-batches.

Why: the engine is synchronous (an embedder and Qdrant Edge in-process) and opening a collection loads a
model (seconds), so a collection is opened lazily, once, and kept open by a *worker*: one thread that owns
the open ``Searcher``. Callers put requests on its queue and wait on a ``concurrent.futures.Future`` — a
blocking caller calls ``result()``, an async one awaits ``asyncio.wrap_future`` — so an event loop never runs
a search, a model load or a Qdrant call. The worker takes the first waiting request, collects whatever else
arrives within the request's window (up to its batch size), groups the requests by identical options and
filter, and answers each group with one ``Searcher.search_many`` call: the queries of a group are embedded
in ONE model forward pass, which is where concurrent callers get faster than the same calls one after
another. One thread per collection also means the searcher is never used from two threads at once.

Workers are shared process-wide per key (the index location and the collection name) with a reference
count: embedded Qdrant Edge lets a process open a collection only once, so two users of the same collection
— even from two different ``Kret`` objects — share one open collection and one loaded model. A ``Lease`` is
one user's reference; the last release closes the collection. At exit every worker is joined (see
``_close_all``). Nothing here knows about LangChain: ``kret.langchain`` is a thin adapter over it.
"""

from __future__ import annotations

import atexit
import queue
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from kret.engine.collection import check_model
from kret.engine.models import ModelInfo
from kret.engine.search import Searcher, SearchOptions
from kret.engine.types import Hit, SearchFilter
from kret.errors import ModelError, ModelMismatchError, StoreError

__all__ = ["Lease", "SearchAnswer", "SearchRequest", "SearchWorker", "acquire"]

CLOSE_TIMEOUT_S = 30.0
WORKER_PREFIX = "kret-search-worker-"


class SearchAnswer(NamedTuple):
    """A request's hits and the model record of the collection that produced them (its manifest's ``model``)."""

    hits: list[Hit]
    model: Mapping[str, Any]


@dataclass(eq=False)
class SearchRequest:
    """One search for a worker. ``query=None`` only opens the collection (warm-up).

    ``group`` must be equal exactly for requests that may share one ``search_many`` call (same options, same
    filter). ``model`` is a model the caller named explicitly: it is checked once against the collection,
    through ``resolve_model``. The first request's ``window_s``/``max_batch`` decide how long the worker
    waits for company and how many it takes.
    """

    query: str | None
    opts: SearchOptions
    flt: SearchFilter | None
    group: Hashable
    model: str | None
    resolve_model: Callable[[str], ModelInfo]
    window_s: float = 0.0
    max_batch: int = 1
    future: Future[SearchAnswer] = field(default_factory=Future)


# How a worker opens its collection: the model spec to try (None = the collection's own), returning the
# searcher; ``ModelMismatchError``/``ModelError`` mean "not this model, try the next".
OpenSearcher = Callable[[str | None], Searcher]

_STOP = object()


class SearchWorker:
    """One open collection, one worker thread, shared by every lease on that collection."""

    def __init__(
        self,
        key: Hashable,
        collection: str,
        open_searcher: OpenSearcher,
        configured_model: str | None,
        previous: SearchWorker | None,
    ) -> None:
        self.key = key
        self.collection = collection
        self.refs = 0
        self._open_searcher: OpenSearcher | None = open_searcher
        self._configured_model = configured_model
        self._previous = previous  # the worker this one replaces: its collection must be closed first
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._stopping = False
        self._searcher: Searcher | None = None
        self._verified: set[str] = set()
        self.thread: threading.Thread | None = None
        self.closed = threading.Event()
        self.batches = 0  # search_many calls made (for tests and diagnostics)

    # caller side ---------------------------------------------------------------------------------------
    def submit(self, req: SearchRequest) -> Future[SearchAnswer] | None:
        """Queue a request; None when the worker is shutting down (the caller takes a fresh one)."""
        with self._lock:
            if self._stopping:
                return None
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._run, name=f"{WORKER_PREFIX}{self.collection}", daemon=True
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
                self._previous.closed.wait(CLOSE_TIMEOUT_S)
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

    def _collect(self, batch: list[SearchRequest]) -> bool:
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

    def _open(self, first: SearchRequest) -> Searcher:
        """Open the collection with the first model that is the collection's own.

        Tried in order: the model the first request names, the configured model (a local folder, say), then
        the model the collection's manifest names. A request naming another model is refused in ``_verify``
        without keeping the collection from opening for the others.
        """
        if self._searcher is not None:
            return self._searcher
        open_searcher = self._open_searcher
        assert open_searcher is not None
        candidates: list[str] = []
        for spec in (first.model, self._configured_model):
            if spec and spec != "default" and spec not in candidates:
                candidates.append(spec)
        errors: list[Exception] = []
        for spec in candidates:
            try:
                self._searcher = open_searcher(spec)
            except (ModelMismatchError, ModelError) as exc:
                errors.append(exc)
                continue
            self._verified.add(spec)
            return self._searcher
        try:
            self._searcher = open_searcher(None)
        except (ModelMismatchError, ModelError):
            if errors:
                raise errors[0] from None
            raise
        return self._searcher

    def _verify(self, searcher: Searcher, req: SearchRequest) -> None:
        if req.model is None or req.model in self._verified:
            return
        check_model(self.collection, searcher.collection.manifest, req.resolve_model(req.model))
        self._verified.add(req.model)

    def _process(self, batch: list[SearchRequest]) -> None:
        live = [r for r in batch if r.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            searcher = self._open(live[0])
        except Exception as exc:
            for r in live:
                r.future.set_exception(exc)
            return
        groups: dict[Hashable, list[SearchRequest]] = {}
        model = searcher.collection.manifest.get("model", {})
        for r in live:
            try:
                self._verify(searcher, r)
            except Exception as exc:
                r.future.set_exception(exc)
                continue
            if r.query is None:
                r.future.set_result(SearchAnswer([], model))
            else:
                groups.setdefault(r.group, []).append(r)
        for reqs in groups.values():
            self._search(searcher, reqs, model)

    def _search(self, searcher: Searcher, reqs: list[SearchRequest], model: Mapping[str, Any]) -> None:
        opts, flt = reqs[0].opts, reqs[0].flt
        try:
            self.batches += 1
            results = searcher.search_many([r.query or "" for r in reqs], opts, flt)
        except Exception as exc:
            if len(reqs) == 1:
                reqs[0].future.set_exception(exc)
            else:  # give each request its own answer (or its own error)
                for r in reqs:
                    self._search(searcher, [r], model)
            return
        for r, hits in zip(reqs, results, strict=True):
            r.future.set_result(SearchAnswer(hits, model))

    def _finish(self) -> None:
        searcher, self._searcher = self._searcher, None
        try:
            if searcher is not None:
                searcher.collection.close()
        finally:
            self._open_searcher = None
            while True:  # nothing is queued after the stop mark; this only guards against a lost request
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not _STOP and item.future.set_running_or_notify_cancel():
                    item.future.set_exception(StoreError(f"the searches on {self.collection!r} were closed"))
            with _REGISTRY_LOCK:
                if _CLOSING.get(self.key) is self:
                    del _CLOSING[self.key]
            self.closed.set()


_REGISTRY_LOCK = threading.Lock()
_WORKERS: dict[Hashable, SearchWorker] = {}
_CLOSING: dict[Hashable, SearchWorker] = {}


def acquire(
    key: Hashable, collection: str, open_searcher: OpenSearcher, configured_model: str | None = None
) -> Lease:
    """A lease on the worker for ``key`` (created if none is open); ``open_searcher`` is used only by a new one."""
    with _REGISTRY_LOCK:
        worker = _WORKERS.get(key)
        if worker is None:
            worker = SearchWorker(key, collection, open_searcher, configured_model, _CLOSING.get(key))
            _WORKERS[key] = worker
        worker.refs += 1
        return Lease(worker)


def _release(worker: SearchWorker, wait: bool) -> None:
    with _REGISTRY_LOCK:
        worker.refs -= 1
        if worker.refs > 0:
            return
        if _WORKERS.get(worker.key) is worker:
            del _WORKERS[worker.key]
        _CLOSING[worker.key] = worker
    worker.stop()
    if wait and threading.current_thread() is not worker.thread:
        worker.closed.wait(CLOSE_TIMEOUT_S)


class Lease:
    """One user's reference on a worker; released once (explicitly, or by a finalizer of its owner)."""

    def __init__(self, worker: SearchWorker) -> None:
        self.worker: SearchWorker | None = worker
        self._lock = threading.Lock()

    def release(self, wait: bool = False) -> None:
        """Drop the reference; with ``wait``, block until the last release has closed the collection."""
        with self._lock:
            worker, self.worker = self.worker, None
        if worker is not None:
            _release(worker, wait)


@atexit.register
def _close_all() -> None:
    """At exit, close every open collection — and those already closing — and let each worker thread end.

    A user released just before exit (a retriever garbage-collected when ``main`` returns) leaves its worker
    closing the collection and dropping the model. Python stops a daemon thread that is still running when
    finalisation starts by unwinding it, and an unwind through native frames (a C++ destructor that released
    the GIL) aborts the process: "terminate called without an active exception", exit 134, after a run that
    had finished its work (bench/load_async.py). So the workers are joined, not only waited for.
    """
    with _REGISTRY_LOCK:
        workers = list(_WORKERS.values())
        _WORKERS.clear()
    for w in workers:
        w.stop()
    deadline = time.monotonic() + CLOSE_TIMEOUT_S
    # every worker — of those just stopped, of those already closing, of one only unwinding — sets its
    # ``closed`` before it ends, so joining the threads is all the waiting needed
    for thread in threading.enumerate():
        if thread.name.startswith(WORKER_PREFIX) and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
