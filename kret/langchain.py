"""LangChain retriever over a kret collection (the ``[langchain]`` extra).

    from kret.langchain import KretRetriever
    retriever = KretRetriever(collection="docs", k=4)          # builds its own Kret from settings
    retriever = Kret().as_retriever(collection="docs", k=4)     # or reuses an existing one
    docs = retriever.invoke("한국의 수도는?", k=2, filter={"source_types": ["md"]})

How it runs
-----------
Searches go through ``kret.engine.search_worker``: one worker thread per open collection, shared
process-wide, that answers concurrent requests in micro-batches (the queries of a batch are embedded in one
forward pass). ``invoke`` blocks on the worker's future, ``ainvoke`` awaits it (``asyncio.wrap_future``), so
the event loop never runs a search, a model load or a Qdrant call. Two retrievers on the same collection —
even built from two different ``Kret`` objects — share one open collection and one loaded model (embedded
Qdrant Edge lets a process open a collection only once). ``close()`` (or garbage collection of the
retriever) releases its lease; the last one closes the collection. This module only adapts: options and
filters in, LangChain ``Document``s out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import numbers
import threading
import weakref
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from kret.errors import EmptyQueryError, StoreError, UserInputError

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
from kret.engine.names import check_collection_name
from kret.engine.search import SearchOptions
from kret.engine.search_worker import Lease, SearchAnswer, SearchRequest, SearchWorker, acquire
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
def _to_documents(answer: SearchAnswer, collection: str, mode: str) -> list[Document]:
    return [_to_document(hit, collection, answer.model, mode) for hit in answer.hits]


def _location(kr: Kret, collection: str) -> tuple[str, str | None, str]:
    """Which open collection a retriever shares: the index location and the name."""
    s = kr.settings
    if s.server_mode:
        return ("server", s.qdrant_url, collection)
    return ("edge", str(Path(s.collections_dir).expanduser().resolve()), collection)


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
    _lease: Lease | None = PrivateAttr(default=None)
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
        self.collection = check_collection_name(self.collection or self._kr.settings.collection)
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
        return self._kr.search_options(**values)

    def _request(self, query: Any, kwargs: dict[str, Any]) -> SearchRequest:
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
        return SearchRequest(
            query=query,
            opts=opts,
            flt=flt,
            group=(dataclasses.astuple(opts), _filter_key(flt)),
            model=self.model,
            resolve_model=self._kr.resolve_model,
            window_s=self.batch_window_ms / 1000.0,
            max_batch=self.max_batch_size,
        )

    def _worker(self) -> SearchWorker:
        with self._lease_lock:
            lease = self._lease
            worker = lease.worker if lease is not None else None
            if worker is None:
                kr, name = self._kr, self.collection
                assert name is not None  # set in model_post_init
                lease = acquire(
                    _location(kr, name), name, lambda spec: kr.open(name, spec), kr.settings.model
                )
                worker = lease.worker
                assert worker is not None
                self._lease = lease
                self._finalizer = weakref.finalize(self, lease.release)
            return worker

    def _submit(self, req: SearchRequest) -> Future[SearchAnswer]:
        for _ in range(5):
            future = self._worker().submit(req)
            if future is not None:
                return future
            # close() ran in another thread between taking the worker and queueing: take a fresh one
        raise StoreError(f"could not reach collection {self.collection!r}: it keeps being closed")

    # BaseRetriever ---------------------------------------------------------------------------------------
    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        req = self._request(query, kwargs)
        return _to_documents(self._submit(req).result(), self.collection or "", req.opts.mode)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        req = self._request(query, kwargs)
        answer = await asyncio.wrap_future(self._submit(req))
        return _to_documents(answer, self.collection or "", req.opts.mode)

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
        req = SearchRequest(
            query=None,
            opts=self._defaults,
            flt=None,
            group=(),
            model=self.model,
            resolve_model=self._kr.resolve_model,
        )
        self._submit(req).result()
        return self

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
