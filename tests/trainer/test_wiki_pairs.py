"""Wikipedia readers, title->body pairs and their filters, pair files, mixing and consistency filtering."""

from __future__ import annotations

import bz2
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from kret.errors import DatasetError, TrainingError, UserInputError
from kret.trainer.pairs import (
    MixStats,
    Pair,
    PairStats,
    build_title_body_pairs,
    consistency_filter,
    cut_text,
    is_disambiguation,
    is_list_page,
    mix_pairs,
    read_pairs_jsonl,
    write_pairs_jsonl,
)
from kret.trainer.wiki import (
    ReadStats,
    WikiPage,
    clean_wiki_text,
    detect_format,
    read_jsonl,
    read_wiki,
    read_wikiextractor,
    read_xml_dump,
    wikitext_to_text,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "wiki"
EXTRACT = DATA / "text"
XML = DATA / "kowiki-test-pages-articles.xml"


def words(text: str) -> int:
    return len(text.split())


def page(title: str, text: str, page_id: str = "1") -> WikiPage:
    return WikiPage(page_id=page_id, title=title, text=text, url=None, source="test")


@pytest.fixture
def bz2_tree(tmp_path: Path) -> Path:
    """The fixture folder as WikiExtractor --compress writes it: same layout, every file bz2."""
    for src in EXTRACT.rglob("wiki_*"):
        dst = tmp_path / "text" / src.relative_to(EXTRACT).parent / (src.name + ".bz2")
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(bz2.compress(src.read_bytes(), 9))
    return tmp_path / "text"


# ---------------------------------------------------------------------------------------------------------
# WikiExtractor
# ---------------------------------------------------------------------------------------------------------


def test_wikiextractor_folder_reads_sorted_files_and_cleans_markup() -> None:
    stats = ReadStats()
    pages = list(read_wikiextractor(EXTRACT, stats=stats))
    assert stats.files == 2 and stats.pages == len(pages) == 10
    assert [p.page_id for p in pages][:2] == ["5", "7"]  # wiki_00 before wiki_01
    carter = pages[0]
    assert carter.title == "지미 카터"
    assert carter.url == "https://ko.wikipedia.org/wiki?curid=5"
    assert carter.source == "kowiki"
    lines = carter.text.split("\n")
    assert lines[0].startswith(
        "제임스 얼 카터 주니어(1924년 10월 1일 ~ )는"
    )  # title line dropped, "(, " fixed
    assert "생애." in lines  # headings stay as short lines
    assert '"땅콩 농부"' in carter.text and "AT&T" in carter.text  # entities unescaped
    assert "다음 줄이다." in lines[-1] and "별명도 있다." in lines[-1]  # <br> -> new line, "()" gone
    assert "조지아 출신" in carter.text
    for junk in ("<ref", "출처 문헌", "[[", "]]", "분류", "&quot;", "&amp;", "()"):
        assert junk not in carter.text
    qa = next(p for p in pages if p.page_id == "23")
    assert qa.title == "Q&A"
    assert "<The Beatles>" in qa.text  # angle-bracket quotations are prose, not markup


def test_wikiextractor_bz2_reads_the_same_as_plain(bz2_tree: Path) -> None:
    plain = list(read_wikiextractor(EXTRACT))
    assert list(read_wikiextractor(bz2_tree)) == plain
    single = list(read_wiki(bz2_tree / "AA" / "wiki_01.bz2"))
    assert single == plain[6:]


def test_wikiextractor_unclosed_doc_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "wiki_00"
    f.write_text('<doc id="1" url="u" title="t">\nt\n\n본문\n', encoding="utf-8")
    with pytest.raises(DatasetError, match="never closed"):
        list(read_wikiextractor(f))


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no WikiExtractor files"):
        list(read_wikiextractor(tmp_path))


def test_clean_wiki_text_artifacts() -> None:
    assert clean_wiki_text("체첸(, , ) 공화국") == "체첸 공화국"
    assert clean_wiki_text("수학(數學, , 줄여서 math)은") == "수학(數學, 줄여서 math)은"
    assert clean_wiki_text("온나데(; )라고") == "온나데라고"
    assert clean_wiki_text("a [[파일:x.jpg|섬네일|[[윤치호]] 사진]] b") == "a b"
    assert clean_wiki_text("[[en:Foo]]끝 [[w:Bar|바]]") == "끝 바"
    assert clean_wiki_text("x &lt;score&gt;c d e&lt;/score&gt; y") == "x y"
    assert clean_wiki_text("a &amp;amp; b", unescape=False) == "a &amp;amp; b"


# ---------------------------------------------------------------------------------------------------------
# JSONL pages
# ---------------------------------------------------------------------------------------------------------


def test_read_jsonl_pages(tmp_path: Path) -> None:
    f = tmp_path / "pages.jsonl"
    rows = [
        {"id": "a1", "title": "서울", "text": "서울\n서울은 대한민국의 수도이다.", "url": "https://x/1"},
        {"title": "부산", "body": "부산은 항구 도시이다."},
        {"title": "대구", "contents": "대구는 분지에 있다. [[분류:대구]]"},
    ]
    f.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n", encoding="utf-8")
    pages = list(read_wiki(f, source="mywiki"))
    assert [p.title for p in pages] == ["서울", "부산", "대구"]
    assert pages[0].page_id == "a1" and pages[0].url == "https://x/1"
    assert pages[0].text == "서울은 대한민국의 수도이다."  # repeated title line dropped
    assert pages[1].page_id == "pages:2" and pages[1].url is None
    assert pages[2].text == "대구는 분지에 있다."
    assert {p.source for p in pages} == {"mywiki"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ('["a"]', "JSON object"),
        ('{"text": "본문"}', "title"),
        ('{"title": "t", "body": 3}', "text"),
    ],
)
def test_read_jsonl_bad_line_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text('{"title": "좋은", "text": "줄"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=rf"bad\.jsonl:2: .*{message}"):
        list(read_jsonl(f))


# ---------------------------------------------------------------------------------------------------------
# MediaWiki XML dump
# ---------------------------------------------------------------------------------------------------------


def _check_xml_pages(pages: list[WikiPage], stats: ReadStats) -> None:
    assert [p.title for p in pages] == ["홍길동", "활빈당"]
    assert stats.pages == 5
    assert stats.redirects_skipped == 2  # <redirect> element, and a "#REDIRECT" text without one
    assert stats.other_namespace_skipped == 1
    hong = pages[0]
    assert hong.page_id == "101"
    assert hong.url == "https://ko.wikipedia.org/wiki?curid=101"
    assert (
        hong.text.split("\n")[0]
        == "홍길동(洪吉童, 1443년 ~ )은 조선의 의적이다. 그는 소설 주인공으로 유명하다."
    )
    assert "생애." in hong.text.split("\n")
    assert "어린 시절 서자로 태어나 차별을 받았다.\n이후 활빈당을 이끌었다." in hong.text
    for junk in (
        "정보상자",
        "llang",
        "Hong Gildong",
        "웹 인용",
        "example.com",
        "섬네일",
        "초상",
        "연도",
        "표기둘",
    ):
        assert junk not in hong.text
    for junk in ("숨은 주석", "각주", "분류", "조선의 인물", "{{", "[[", "'''", "<"):
        assert junk not in hong.text
    assert not hong.is_disambiguation
    assert pages[1].is_disambiguation  # {{동음이의}} template


def test_xml_dump_plain_and_bz2(tmp_path: Path) -> None:
    stats = ReadStats()
    _check_xml_pages(list(read_xml_dump(XML, stats=stats)), stats)
    compressed = tmp_path / "kowiki-latest-pages-articles.xml.bz2"
    compressed.write_bytes(bz2.compress(XML.read_bytes()))
    stats = ReadStats()
    _check_xml_pages(list(read_wiki(compressed, stats=stats)), stats)


def test_xml_namespace_agnostic_and_malformed(tmp_path: Path) -> None:
    no_ns = tmp_path / "a.xml"
    no_ns.write_text(
        XML.read_text(encoding="utf-8").replace(' xmlns="http://www.mediawiki.org/xml/export-0.11/"', ""),
        encoding="utf-8",
    )
    assert [p.title for p in read_xml_dump(no_ns)] == ["홍길동", "활빈당"]
    broken = tmp_path / "b.xml"
    broken.write_text("<mediawiki><page><title>x</title>", encoding="utf-8")
    with pytest.raises(DatasetError, match="malformed XML"):
        list(read_xml_dump(broken))


def test_wikitext_to_text_drops_reference_sections() -> None:
    text = "본문이다.\n== 같이 보기 ==\n* [[다른 문서]]\n=== 하위 ===\n내용\n== 역사 ==\n역사 본문."
    assert wikitext_to_text(text) == "본문이다.\n역사.\n역사 본문."


def test_detect_format(tmp_path: Path) -> None:
    assert detect_format(EXTRACT) == "wikiextractor"
    assert detect_format(Path("x/wiki_07.bz2")) == "wikiextractor"
    assert detect_format(Path("p.jsonl")) == "jsonl"
    assert detect_format(Path("kowiki-pages-articles.xml")) == "xml"
    assert detect_format(Path("kowiki-pages-articles.xml.bz2")) == "xml"
    with pytest.raises(UserInputError, match="cannot tell"):
        detect_format(Path("dump.txt"))
    with pytest.raises(DatasetError, match="no such"):
        read_wiki(tmp_path / "missing.xml")
    with pytest.raises(UserInputError, match="unknown Wikipedia format"):
        read_wiki(XML, fmt="parquet")


# ---------------------------------------------------------------------------------------------------------
# Title -> body pairs and filters
# ---------------------------------------------------------------------------------------------------------


def test_pairs_filters_are_counted_one_by_one(bz2_tree: Path) -> None:
    stats = PairStats()
    pairs = list(build_title_body_pairs(read_wiki(bz2_tree, stats=stats.read), stats=stats))
    assert [p.query for p in pairs] == ["지미 카터", "수학", "Q&A"]
    assert stats.removed == {
        "empty_or_redirect": 1,  # 빈 문서
        "disambiguation": 2,  # "화성 (동음이의)" by title, "소수" by its lead sentence
        "list_page": 1,  # 대한민국의 산 목록
        "near_empty": 1,  # 짧은 글
        "duplicate_title": 1,  # second 지미 카터
        "duplicate_body": 1,  # 수학 (학문) repeats 수학's body
    }
    assert stats.pages_read == 10 and stats.kept == 3 and stats.truncated == 0
    assert stats.read.files == 2 and stats.read.pages == 10
    assert stats.pages_read == stats.kept + sum(stats.removed.values())
    assert pairs[0].pair_id == "kowiki:5" and pairs[0].source == "kowiki"
    assert pairs[0].positive.startswith("제임스 얼 카터 주니어(1924년")
    assert "kept 3 pairs" in stats.summary()
    assert stats.as_dict()["reader"]["pages"] == 10


def test_pairs_from_xml_count_the_disambiguation_template() -> None:
    stats = PairStats()
    pairs = list(build_title_body_pairs(read_wiki(XML, stats=stats.read), stats=stats))
    assert [p.query for p in pairs] == ["홍길동"]
    assert stats.disambiguation == 1
    assert stats.read.redirects_skipped == 2


@pytest.mark.parametrize(
    ("title", "text", "expected"),
    [
        ("뉴욕 (동음이의)", "뉴욕은 미국의 도시이다. 길게 쓴 본문이 있어도 제목이 동음이의이다.", True),
        ("김성일", "김성일은 다음 사람을 가리킨다.", True),
        ("PC", "PC는 다음을 가리키는 말이다:", True),
        ("화성", "화성의 다른 뜻은 다음과 같다.", True),
        (
            "나노리",
            "나노리는 다음과 같은 뜻이 있다.\n" + "1. 일본 한자어의 특수한 읽기를 말한다. " * 20,
            True,
        ),
        ("행렬", "행렬은 수를 배열한 것이다. 예는 다음과 같다.\n" + "행렬의 성질을 설명한다. " * 30, False),
        (
            "핸런의 면도날",
            "핸런의 면도날의 의미는 다음과 같다: 어리석음을 악의로 돌리지 말라.\n" + "설명. " * 80,
            False,
        ),
        ("수학", "수학은 수, 양, 구조를 다루는 학문이다.", False),
    ],
)
def test_is_disambiguation(title: str, text: str, expected: bool) -> None:
    assert is_disambiguation(page(title, text)) is expected


def test_is_list_page() -> None:
    assert is_list_page("대한민국의 산 목록")
    assert is_list_page("대한민국 제7대 국회의원 목록 (지역구별)")
    assert is_list_page("HD 항성목록")
    assert is_list_page("목록 (동음이의)")
    assert not is_list_page("목록화 기법")
    assert not is_list_page("수학")


def test_redirect_like_body_and_min_body_chars() -> None:
    pages = [page("a", "#넘겨주기 [[b]]", "1"), page("b", "가" * 30, "2"), page("c", "나" * 60, "3")]
    stats = PairStats()
    assert [p.query for p in build_title_body_pairs(pages, stats=stats)] == ["c"]
    assert stats.empty_or_redirect == 1 and stats.near_empty == 1
    stats = PairStats()
    assert len(list(build_title_body_pairs(pages, min_body_chars=10, stats=stats))) == 2


# ---------------------------------------------------------------------------------------------------------
# Cutting to a budget
# ---------------------------------------------------------------------------------------------------------

BODY = "첫 문장은 정확히 다섯 단어이다. 둘째 문장도 정확히 다섯 단어이다.\n생애.\n셋째 문장은 조금 더 길게 일곱 단어이다. 넷째 문장."


def test_cut_text_by_tokens_ends_at_a_sentence() -> None:
    assert cut_text(BODY, token_budget=5, count_tokens=words) == "첫 문장은 정확히 다섯 단어이다."
    # 11 tokens would reach "생애." (a heading with nothing after it): it is dropped.
    assert (
        cut_text(BODY, token_budget=11, count_tokens=words)
        == "첫 문장은 정확히 다섯 단어이다. 둘째 문장도 정확히 다섯 단어이다."
    )
    cut = cut_text(BODY, token_budget=19, count_tokens=words)
    assert cut.endswith("일곱 단어이다.") and "생애.\n셋째" in cut
    assert cut_text(BODY, token_budget=100, count_tokens=words) == BODY


def test_cut_text_never_splits_a_word() -> None:
    long_sentence = "가나다 " * 50 + "끝."
    cut = cut_text(long_sentence, token_budget=7, count_tokens=words)
    assert cut == " ".join(["가나다"] * 7)
    assert cut_text(long_sentence, max_chars=10) == "가나다 가나다"  # 7 chars; one more word would be 11
    assert cut_text("엄청나게긴한단어", max_chars=3) == ""


def test_cut_text_by_chars_and_both_budgets() -> None:
    assert cut_text(BODY, max_chars=40) == "첫 문장은 정확히 다섯 단어이다. 둘째 문장도 정확히 다섯 단어이다."
    assert (
        cut_text(BODY, max_chars=40, token_budget=5, count_tokens=words) == "첫 문장은 정확히 다섯 단어이다."
    )
    with pytest.raises(UserInputError, match="count_tokens"):
        cut_text(BODY, token_budget=5)


def test_pairs_with_token_budget() -> None:
    pages = [
        page(f"t{i}", f"문서 {i} 번의 첫 문장이다. " + "그리고 더 많은 내용이 이어진다. " * 10, str(i))
        for i in range(3)
    ]
    stats = PairStats()
    pairs = list(build_title_body_pairs(pages, body_token_budget=12, count_tokens=words, stats=stats))
    assert len(pairs) == 3 and stats.truncated == 3
    assert all(words(p.positive) <= 12 and p.positive.endswith(".") for p in pairs)
    with pytest.raises(UserInputError):
        list(build_title_body_pairs(pages, body_token_budget=12, stats=PairStats()))


# ---------------------------------------------------------------------------------------------------------
# Pair files
# ---------------------------------------------------------------------------------------------------------


def test_read_pairs_jsonl_accepts_common_key_names(tmp_path: Path) -> None:
    f = tmp_path / "train.jsonl"
    rows = [
        {
            "query": "로마의 면적은?",
            "positive": "로마는 이탈리아의 수도이다.",
            "source": "miracl",
            "query_id": "1",
        },
        {"anchor": "q2", "pos": ["첫째 양성", "둘째"]},
        {"question": "q3", "passage": "p3"},
        {"query": "q4", "text": "p4"},
        {"query": "q5", "document": "p5", "id": 77},
    ]
    f.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    pairs = list(read_pairs_jsonl(f))
    assert [p.query for p in pairs] == ["로마의 면적은?", "q2", "q3", "q4", "q5"]
    assert [p.positive for p in pairs][1:] == ["첫째 양성", "p3", "p4", "p5"]
    assert pairs[0].source == "miracl" and pairs[0].pair_id == "1"
    assert pairs[1].source == "train" and len(pairs[1].pair_id) == 16
    assert pairs[4].pair_id == "77"
    assert {p.source for p in read_pairs_jsonl(f, source="x")} == {"x"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("oops", "not valid JSON"),
        ('{"query": "q"}', "positive"),
        ('{"positive": "p"}', "query"),
        ('{"query": "q", "positive": []}', "empty"),
        ('{"query": " ", "positive": "p"}', "query"),
    ],
)
def test_read_pairs_jsonl_bad_line(tmp_path: Path, line: str, message: str) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text('{"query": "q", "positive": "p"}\n\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=rf"p\.jsonl:3: .*{message}"):
        list(read_pairs_jsonl(f))


def test_write_pairs_jsonl_round_trip_and_hash(tmp_path: Path) -> None:
    pairs = [Pair("질문", "답 본문", "kowiki", "kowiki:1"), Pair("q", "p", "s2", "x")]
    out = tmp_path / "sub" / "pairs.jsonl"
    digest = write_pairs_jsonl(pairs, out)
    assert digest == hashlib.sha256(out.read_bytes()).hexdigest()
    assert list(read_pairs_jsonl(out)) == pairs
    assert "질문" in out.read_text(encoding="utf-8")  # not \u-escaped
    assert [p.name for p in out.parent.iterdir()] == ["pairs.jsonl"]  # no temp file left
    assert write_pairs_jsonl(iter(pairs), out) == digest


def test_write_pairs_jsonl_failure_leaves_no_file(tmp_path: Path) -> None:
    def broken():
        yield Pair("q", "p", "s", "1")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_pairs_jsonl(broken(), tmp_path / "out.jsonl")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------------
# Mixing
# ---------------------------------------------------------------------------------------------------------


def _pairs(prefix: str, n: int) -> list[Pair]:
    return [Pair(f"{prefix}q{i}", f"{prefix}p{i}", prefix, f"{prefix}{i}") for i in range(n)]


def test_mix_pairs_ratio_and_determinism() -> None:
    wiki, s2 = _pairs("w", 100), _pairs("s", 300)
    stats = MixStats()
    mixed = mix_pairs(wiki, s2, 1.0, seed=3, stats=stats)
    assert len(mixed) == 200 and stats.total == 200
    assert sum(p.source == "w" for p in mixed) == 100 and sum(p.source == "s" for p in mixed) == 100
    assert len({p.pair_id for p in mixed}) == 200  # no pair twice
    assert mix_pairs(wiki, s2, 1.0, seed=3) == mixed
    assert mix_pairs(wiki, s2, 1.0, seed=4) != mixed
    assert [p.source for p in mixed[:20]].count("w") not in (0, 20)  # shuffled, not concatenated
    half = mix_pairs(wiki, s2, 0.5, seed=0)
    assert sum(p.source == "s" for p in half) == 50 and sum(p.source == "w" for p in half) == 100
    assert sorted(mix_pairs(wiki, s2, 0.0, seed=0), key=lambda p: p.pair_id) == sorted(
        wiki, key=lambda p: p.pair_id
    )


def test_mix_pairs_small_secondary_subsamples_primary() -> None:
    stats = MixStats()
    mixed = mix_pairs(_pairs("w", 100), _pairs("s", 30), 1.0, seed=0, stats=stats)
    assert (stats.primary_used, stats.secondary_used, stats.primary_dropped) == (30, 30, 70)
    assert len(mixed) == 60
    stats = MixStats()
    mix_pairs(_pairs("w", 100), _pairs("s", 30), 2.0, seed=0, stats=stats)
    assert (stats.primary_used, stats.secondary_used) == (15, 30)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(UserInputError):
            mix_pairs(_pairs("w", 3), _pairs("s", 3), bad, seed=0)


# ---------------------------------------------------------------------------------------------------------
# Consistency filtering
# ---------------------------------------------------------------------------------------------------------


def _encoders(qvec: dict[str, np.ndarray], pvec: dict[str, np.ndarray], seen: list[int] | None = None):
    def enc_q(texts: list[str]) -> np.ndarray:
        if seen is not None:
            seen.append(len(texts))
        return np.stack([qvec[t] for t in texts])

    def enc_p(texts: list[str]) -> np.ndarray:
        return np.stack([pvec[t] for t in texts])

    return enc_q, enc_p


def _fake_setup() -> tuple[list[Pair], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Passage i is the unit vector e_i. Queries 0-3 point at their own passage (rank 1); query 4 prefers
    passage 0 over its own (rank 2); query 5 prefers passages 0 and 1 (rank 3); pair 6 has the same
    passage as pair 0, which must not count as its own negative."""
    dim = 6
    eye = np.eye(dim, dtype=np.float32)
    pvec = {f"p{i}": eye[i] for i in range(dim)}
    qvec = {f"q{i}": eye[i] for i in range(4)}
    qvec["q4"] = eye[0] + 0.5 * eye[4]
    qvec["q5"] = eye[0] + eye[1] + 0.1 * eye[5]
    qvec["q6"] = 3 * eye[0]  # not normalised: the filter must normalise
    pairs = [Pair(f"q{i}", f"p{i}", "t", str(i)) for i in range(6)] + [Pair("q6", "p0", "t", "6")]
    return pairs, qvec, pvec


def test_consistency_filter_drops_the_inconsistent_pairs() -> None:
    pairs, qvec, pvec = _fake_setup()
    seen: list[int] = []
    enc_q, enc_p = _encoders(qvec, pvec, seen)
    kept, dropped = consistency_filter(pairs, enc_q, enc_p, top_k=1, sample_size=1000, batch_size=3)
    assert [p.pair_id for p in kept] == ["0", "1", "2", "3", "6"] and dropped == 2
    assert seen == [3, 3, 1]  # encoded in batches
    kept, dropped = consistency_filter(pairs, enc_q, enc_p, top_k=2)
    assert [p.pair_id for p in kept] == ["0", "1", "2", "3", "4", "6"] and dropped == 1
    assert consistency_filter(pairs, enc_q, enc_p, top_k=3) == (pairs, 0)


def test_consistency_filter_small_sample_is_seeded() -> None:
    """60 pairs with passage e_i; the 10 "bad" queries each prefer 20 other passages to their own, so
    whether one drops depends on whether the random sample of negatives hits one of those 20."""
    n, bad = 60, range(0, 60, 6)
    eye = np.eye(n, dtype=np.float32)
    pvec = {f"p{i}": eye[i] for i in range(n)}
    qvec = {f"q{i}": eye[i] for i in range(n)}
    for i in bad:
        qvec[f"q{i}"] = 0.3 * eye[i] + eye[[(i + 1 + j) % n for j in range(20)]].sum(axis=0)
    pairs = [Pair(f"q{i}", f"p{i}", "t", str(i)) for i in range(n)]
    enc_q, enc_p = _encoders(qvec, pvec)
    full = consistency_filter(pairs, enc_q, enc_p, top_k=1, sample_size=1000)
    assert full[1] == 10 and {p.pair_id for p in full[0]} == {str(i) for i in range(n) if i not in bad}
    runs = [
        consistency_filter(pairs, enc_q, enc_p, top_k=1, sample_size=5, seed=s, batch_size=8)
        for s in (1, 1, 2)
    ]
    assert runs[0] == runs[1]
    for kept, dropped in runs:
        assert 0 < dropped < 10  # a 5-passage sample misses a bad query's 20 favourites now and then
        assert {p.pair_id for p in full[0]} <= {p.pair_id for p in kept}  # good pairs never drop


def test_consistency_filter_checks_its_inputs() -> None:
    pairs, qvec, pvec = _fake_setup()

    def enc_p(texts: list[str]) -> np.ndarray:
        return np.stack([pvec[t] for t in texts])

    with pytest.raises(TrainingError, match="shape"):
        consistency_filter(pairs, lambda t: np.zeros((1, 6)), enc_p)
    with pytest.raises(TrainingError, match="differ"):
        consistency_filter(pairs, lambda t: np.ones((len(t), 3)), enc_p)
    with pytest.raises(UserInputError):
        consistency_filter(pairs, enc_p, enc_p, top_k=0)
    assert consistency_filter(pairs[:1], enc_p, enc_p) == (pairs[:1], 0)
