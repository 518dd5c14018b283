"""The LangChain retriever against the real engine and the real default model: LangChain's own standard
retriever suite, then metadata, per-call overrides, typed errors, batching and the async path.

One Kret (one model load) and one index of samples/ko serve the whole module; it lives in its own KRET_HOME
passed explicitly, since conftest's autouse fixture changes KRET_HOME for every test.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("langchain_core")

from langchain_core.documents import Document  # noqa: E402
from langchain_tests.integration_tests import RetrieversIntegrationTests  # noqa: E402

from kret.api import Kret  # noqa: E402
from kret.engine.search import Searcher  # noqa: E402
from kret.errors import (  # noqa: E402
    CollectionNotFoundError,
    EmptyQueryError,
    ModelMismatchError,
    UnknownFilterKeyError,
    UserInputError,
)
from kret.langchain import KretRetriever, to_search_filter  # noqa: E402

pytestmark = pytest.mark.slow

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "ko"
COLL = "ko"
QUERIES = [
    "김치는 어떻게 담그나요?",
    "한글은 누가 만들었나",
    "제주도는 어떤 섬인가",
    "지하철 환승 방법",
    "반도체 공정",
    "연차 휴가는 며칠인가",
    "출장비 정산 기한",
    "재택근무 신청",
]
_STATE: dict = {}


@pytest.fixture(scope="module", autouse=True)
def env(default_model_dir, tmp_path_factory):
    """One Kret on its own KRET_HOME with samples/ko indexed, and one retriever keeping the collection open."""
    root = tmp_path_factory.mktemp("langchain")
    with pytest.MonkeyPatch.context() as mp:  # the module fixture runs before conftest's per-test isolation
        for key in list(os.environ):
            if key.startswith("KRET_") and key != "KRET_TEST_CACHE":
                mp.delenv(key, raising=False)
        mp.setenv("KRET_CONFIG", str(root / "no-kret.toml"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        kr = Kret(home=root / "home", model=str(default_model_dir))
        summary = kr.index([SAMPLES], collection=COLL)
        assert summary.added == 8 and summary.failed == 0
        keeper = kr.as_retriever(collection=COLL).warm_up()
    _STATE.update(kret=kr, home=root / "home", model=str(default_model_dir), root=root)
    yield _STATE
    keeper.close()
    _STATE.clear()


@pytest.fixture
def kr(env) -> Kret:
    return env["kret"]


@pytest.fixture
def retriever(kr):
    r = KretRetriever.from_kret(kr, collection=COLL, k=4)
    yield r
    r.close()


# LangChain's standard suite --------------------------------------------------------------------------------
# pyproject runs pytest-asyncio in strict mode: mark the suite's async test without overriding it (overriding
# a standard test is refused by test_no_overrides_DO_NOT_OVERRIDE).
_ainvoke_std = RetrieversIntegrationTests.test_ainvoke_returns_documents
if not any(m.name == "asyncio" for m in getattr(_ainvoke_std, "pytestmark", [])):
    pytest.mark.asyncio(_ainvoke_std)


class TestKretRetrieverStandard(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[KretRetriever]:
        return KretRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"kret": _STATE["kret"], "collection": COLL}

    @property
    def retriever_query_example(self) -> str:
        return "김치는 어떻게 담그나요?"


# metadata ---------------------------------------------------------------------------------------------------
def test_documents_carry_metadata(retriever, kr, env):
    docs = retriever.invoke("김치는 어떻게 담그나요?")
    assert len(docs) == 4 and all(isinstance(d, Document) for d in docs)
    top = docs[0]
    md = top.metadata
    assert top.page_content and "김치" in top.page_content
    assert top.id == md["chunk_id"]
    assert md["path"].endswith("kimchi.md") and md["source_type"] == "md"
    assert md["doc_id"] and md["title"] == "김치와 김장 문화" and isinstance(md["chunk_index"], int)
    assert [d.metadata["rank"] for d in docs] == [1, 2, 3, 4]
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)
    assert md["mode"] == "hybrid" and md["collection"] == COLL
    assert set(md["branch_scores"]) == {"dense", "sparse"}
    for branch in md["branch_scores"].values():
        assert set(branch) == {"score", "rank"} and branch["rank"] >= 1
    info = kr.resolve_model(env["model"])
    assert md["model"] == {"name": info.name, "fingerprint": info.fingerprint}
    assert md["meta"] == {}

    faq = retriever.invoke("연차 휴가는 며칠인가", k=1, filter={"source_types": ["jsonl"]})
    assert faq[0].metadata["meta"] == {"dept": "인사", "source_id": "faq-1"}
    assert faq[0].metadata["title"] == "연차 휴가"


# per-call overrides ----------------------------------------------------------------------------------------
def test_per_call_k_and_mode(retriever):
    q = "김치는 어떻게 담그나요?"
    assert len(retriever.invoke(q, k=1)) == 1
    assert len(retriever.invoke(q, k=6)) == 6
    assert len(retriever.invoke(q)) == 4  # the constructor's k is untouched by a per-call one
    dense = retriever.invoke(q, mode="dense", k=3)
    assert all(set(d.metadata["branch_scores"]) == {"dense"} and d.metadata["mode"] == "dense" for d in dense)
    assert dense[0].metadata["score"] == dense[0].metadata["branch_scores"]["dense"]["score"]
    sparse = retriever.invoke(q, mode="sparse", k=3)
    assert all(set(d.metadata["branch_scores"]) == {"sparse"} for d in sparse)
    # per-call options reach batch and abatch too
    assert [len(x) for x in retriever.batch([q, q], k=2)] == [2, 2]
    assert [len(x) for x in asyncio.run(retriever.abatch([q, q], k=1))] == [1, 1]


def test_per_call_filters(retriever):
    q = "한국"
    guides = str(SAMPLES / "guides")
    got = retriever.invoke(q, k=10, filter={"path_prefix": guides})
    assert got and all(d.metadata["path"].startswith(guides) for d in got)
    got = retriever.invoke(q, k=10, filter={"path_glob": "*.md"})
    assert got and all(d.metadata["path"].endswith(".md") for d in got)
    got = retriever.invoke(q, k=10, filter={"source_types": "txt"})
    assert got and {d.metadata["source_type"] for d in got} == {"txt"}
    flat = retriever.invoke("근무", k=10, filter={"dept": "인사"})
    assert {d.metadata["meta"]["dept"] for d in flat} == {"인사"} and len(flat) == 2
    nested = retriever.invoke("근무", k=10, filter={"where": {"dept": "인사"}, "source_types": ["jsonl"]})
    assert {d.id for d in nested} == {d.id for d in flat}
    assert retriever.invoke(q, filter={"path_prefix": "/nowhere/at/all"}) == []

    # a constructor filter is the default; a per-call filter replaces it, filter={} removes it
    only_faq = KretRetriever.from_kret(
        retriever.kret, collection=COLL, k=10, filter={"source_types": ["jsonl"]}
    )
    try:
        assert {d.metadata["source_type"] for d in only_faq.invoke(q)} == {"jsonl"}
        assert {d.metadata["source_type"] for d in only_faq.invoke(q, filter={"source_types": ["md"]})} == {
            "md"
        }
        assert len({d.metadata["source_type"] for d in only_faq.invoke(q, filter={})}) > 1
    finally:
        only_faq.close()


def test_filter_conversion():
    assert to_search_filter(None) is None and to_search_filter({}) is None
    f = to_search_filter({"dept": "인사", "year": 2024})
    assert f.where == {"dept": "인사", "year": 2024} and not f.source_types
    f = to_search_filter({"path_prefix": "docs/", "source_types": "md", "where": {"dept": "인사"}})
    assert (f.path_prefix, f.source_types, f.where) == ("docs/", ["md"], {"dept": "인사"})
    for bad in ({"path_prefix": "docs/", "dept": "인사"}, {"source_types": [1]}, {"where": ["x"]}, "md"):
        with pytest.raises(UserInputError):
            to_search_filter(bad)


# errors -------------------------------------------------------------------------------------------------
def test_typed_errors(retriever, kr):
    with pytest.raises(EmptyQueryError):
        retriever.invoke("")
    with pytest.raises(EmptyQueryError):
        retriever.invoke("   \n")
    with pytest.raises(UserInputError, match="mode"):
        retriever.invoke("김치", mode="semantic")
    with pytest.raises(UserInputError, match="k must"):
        retriever.invoke("김치", k=0)
    with pytest.raises(UserInputError, match="k must"):
        retriever.invoke("김치", k="3")
    with pytest.raises(UserInputError, match="top_k"):
        retriever.invoke("김치", top_k=3)
    with pytest.raises(UserInputError, match="filter"):
        retriever.invoke("김치", filter={"path_prefix": "x", "dept": "인사"})
    with pytest.raises(UnknownFilterKeyError):
        retriever.invoke("김치", filter={"no_such_key": 1})
    with pytest.raises(UnknownFilterKeyError):
        asyncio.run(retriever.ainvoke("김치", filter={"no_such_key": 1}))
    assert retriever.invoke("김치", k=1)  # the retriever still works after errors

    missing = KretRetriever.from_kret(kr, collection="missing")
    try:
        with pytest.raises(CollectionNotFoundError):
            missing.invoke("김치")
        with pytest.raises(CollectionNotFoundError):
            asyncio.run(missing.ainvoke("김치"))
    finally:
        missing.close()

    with pytest.raises(UserInputError):
        KretRetriever(kret=kr, home="/tmp/x")
    with pytest.raises(UserInputError):
        KretRetriever(kret=kr, k="many")
    with pytest.raises(UserInputError):
        KretRetriever(kret=kr, k=0)
    with pytest.raises(UserInputError):
        KretRetriever(kret=kr, collection="../etc")
    with pytest.raises(UserInputError):
        KretRetriever(kret=kr, top_k=3)  # unknown constructor argument: refused, not ignored


def test_other_model_is_refused(kr, tiny_model_dir):
    other = KretRetriever.from_kret(kr, collection=COLL, model=str(tiny_model_dir))
    try:
        with pytest.raises(ModelMismatchError):
            other.invoke("김치")
    finally:
        other.close()


def test_missing_langchain_is_a_user_error(monkeypatch):
    """Without langchain-core the module says which extra to install (a fresh copy of the module is loaded)."""
    for name in [n for n in sys.modules if n == "langchain_core" or n.startswith("langchain_core.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "langchain_core", None)
    spec = importlib.util.find_spec("kret.langchain")
    module = importlib.util.module_from_spec(spec)
    with pytest.raises(UserInputError, match=r"pip install 'kret\[langchain\]'"):
        spec.loader.exec_module(module)


# sharing and lifecycle ---------------------------------------------------------------------------------------
def test_retrievers_share_the_open_collection(kr, env, retriever):
    retriever.invoke("김치", k=1)
    # a retriever that builds its own Kret on the same KRET_HOME shares the open collection (embedded Qdrant
    # Edge refuses a second open in one process) and its loaded model
    own = KretRetriever(collection=COLL, home=env["home"], model=env["model"], k=2)
    try:
        assert own.kret is None
        assert _same_results(own.invoke("김치"), retriever.invoke("김치", k=2))
        assert own._lease.worker is retriever._lease.worker
    finally:
        own.close()
    via_api = kr.as_retriever(collection=COLL, k=2)
    assert isinstance(via_api, KretRetriever) and via_api.kret is kr and via_api.k == 2
    via_api.close()


@pytest.fixture(scope="module")
def solo(env) -> str:
    """A second, two-document collection for tests that open and close a collection themselves."""
    folder = env["root"] / "solo-docs"
    folder.mkdir()
    (folder / "a.txt").write_text("부산은 한국 제2의 도시이며 항구 도시이다.", encoding="utf-8")
    (folder / "b.txt").write_text("대전은 과학 도시로 알려져 있다.", encoding="utf-8")
    env["kret"].index([folder], collection="solo")
    return "solo"


def test_close_releases_and_reopens(kr, solo):
    with KretRetriever.from_kret(kr, collection=solo, k=1) as r:
        assert r.invoke("항구 도시")[0].metadata["path"].endswith("a.txt")
        handle = r._lease.worker
    assert handle.closed.is_set()
    searcher = kr.open(solo)  # the collection really was closed: it can be opened again
    searcher.collection.close()
    assert r.invoke("과학 도시")[0].metadata["path"].endswith("b.txt")  # a closed retriever reopens on use
    r.close()


def test_a_wrong_model_does_not_block_the_others(kr, solo, tiny_model_dir):
    """The first retriever to reach a closed collection names the wrong model: only it is refused."""
    bad = KretRetriever.from_kret(kr, collection=solo, model=str(tiny_model_dir))
    good = KretRetriever.from_kret(kr, collection=solo, k=1)
    try:
        with pytest.raises(ModelMismatchError):
            bad.invoke("항구 도시")
        assert good.invoke("항구 도시")[0].metadata["path"].endswith("a.txt")
        with pytest.raises(ModelMismatchError):
            bad.invoke("항구 도시")
    finally:
        bad.close()
        good.close()


# batching and async ------------------------------------------------------------------------------------------
def _same_results(a: list[Document], b: list[Document]) -> bool:
    """Equal up to the order of exactly tied scores (RRF often ties; Qdrant orders ties arbitrarily)."""
    if len(a) != len(b):
        return False
    sa = [round(d.metadata["score"], 5) for d in a]
    sb = [round(d.metadata["score"], 5) for d in b]
    if sa != sb:
        return False
    cut = sa[-1]  # a tie at the last place may be cut either way
    return {d.id for d, s in zip(a, sa, strict=True) if s > cut} == {
        d.id for d, s in zip(b, sb, strict=True) if s > cut
    }


def _spy(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = Searcher.search_many

    def search_many(self, queries, *args, **kwargs):
        calls.append(len(queries))
        return original(self, queries, *args, **kwargs)

    monkeypatch.setattr(Searcher, "search_many", search_many)
    return calls


@pytest.mark.asyncio
async def test_concurrent_ainvoke_is_batched_and_equal_to_sync(retriever, monkeypatch):
    expected = [retriever.invoke(q) for q in QUERIES]
    calls = _spy(monkeypatch)
    got = await asyncio.gather(*(retriever.ainvoke(q) for q in QUERIES))
    assert all(_same_results(a, b) for a, b in zip(got, expected, strict=True))
    assert sum(calls) == len(QUERIES) and len(calls) < len(QUERIES), calls  # queries were embedded together

    calls.clear()
    got = await retriever.abatch(QUERIES)
    assert all(_same_results(a, b) for a, b in zip(got, expected, strict=True))
    assert len(calls) < len(QUERIES), calls


@pytest.mark.asyncio
async def test_mixed_concurrent_requests_are_grouped_and_isolated(retriever):
    q = QUERIES[0]
    jobs = [
        retriever.ainvoke(q, k=1),
        retriever.ainvoke(q, k=3),
        retriever.ainvoke(q, k=2, mode="dense"),
        retriever.ainvoke(q, filter={"no_such_key": 1}),
        retriever.ainvoke(q, filter={"source_types": ["jsonl"]}),
        retriever.ainvoke(q, k=3),
    ]
    got = await asyncio.gather(*jobs, return_exceptions=True)
    assert [len(x) for x in got if isinstance(x, list)] == [1, 3, 2, 3, 3]
    assert isinstance(got[3], UnknownFilterKeyError)
    assert all(d.metadata["mode"] == "dense" for d in got[2])
    assert {d.metadata["source_type"] for d in got[4]} == {"jsonl"}


def test_sync_batch_is_batched_and_equal(retriever, monkeypatch):
    expected = [retriever.invoke(q) for q in QUERIES]
    calls = _spy(monkeypatch)
    got = retriever.batch(QUERIES)
    assert all(_same_results(a, b) for a, b in zip(got, expected, strict=True))
    assert sum(calls) == len(QUERIES)


@pytest.mark.asyncio
async def test_ainvoke_does_not_block_the_event_loop(retriever, monkeypatch):
    started = threading.Event()
    original = Searcher.search_many

    def slow(self, *args, **kwargs):
        started.set()
        time.sleep(0.3)  # stands in for a long embedding / Qdrant call
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Searcher, "search_many", slow)
    task = asyncio.ensure_future(retriever.ainvoke(QUERIES[0]))
    deadline = time.monotonic() + 60
    while not started.is_set():
        assert not task.done() and time.monotonic() < deadline, "the search never started"
        await asyncio.sleep(0.005)
    ticks = 0
    for _ in range(5):  # the loop keeps running other coroutines while the search runs in the worker
        await asyncio.sleep(0.01)
        ticks += 1
    assert ticks == 5 and not task.done()
    assert len(await task) == 4


@pytest.mark.asyncio
async def test_cancelled_ainvoke_does_not_break_the_retriever(retriever):
    task = asyncio.ensure_future(retriever.ainvoke(QUERIES[1]))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(await retriever.ainvoke(QUERIES[1], k=2)) == 2


# LCEL ---------------------------------------------------------------------------------------------------------
def test_lcel_chain(retriever):
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnablePassthrough

    seen = []

    def format_docs(docs):
        seen.extend(docs)
        return "\n\n".join(f"[{d.metadata['title']}] {d.page_content}" for d in docs)

    prompt = ChatPromptTemplate.from_messages(
        [("system", "다음 문서만 근거로 답하세요.\n\n{context}"), ("human", "{question}")]
    )
    llm = FakeListChatModel(responses=["김치는 배추를 소금에 절여 양념으로 버무려 담급니다."])
    chain = (
        {"context": retriever | format_docs, "question": RunnablePassthrough()}
        | prompt
        | llm
        | StrOutputParser()
    )
    assert chain.invoke("김치는 어떻게 담그나요?").startswith("김치는")
    assert len(seen) == 4 and seen[0].metadata["path"].endswith("kimchi.md")
