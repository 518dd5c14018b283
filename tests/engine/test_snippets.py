"""Snippets and highlights on hand-made Korean text (Kiwi only, no model): particles and endings, several
matches, no match, long sentences, text cut before and after the snippet."""

from __future__ import annotations

import pytest

from kret.engine.snippets import ELLIPSIS, SnippetMaker, make_snippet
from kret.engine.sparse import KiwiBM25Encoder

HANGUL = (
    "조선은 1392년에 세워졌다. 세종대왕이 훈민정음을 만들었다. 그는 조선의 네 번째 왕이었다. "
    "한글은 1443년에 창제되었고 1446년에 반포되었다. 오늘날 한글은 널리 쓰인다."
)


def _marked(snippet) -> list[str]:
    return [snippet.text[a:b] for a, b in snippet.spans]


def _consistent(snippet, text: str) -> None:
    """Every span in the snippet shows the same characters as some highlight in the full text."""
    full = {text[a:b] for a, b in snippet.highlights}
    for part in _marked(snippet):
        assert part in full
    for a, b in snippet.highlights:
        assert 0 <= a < b <= len(text)


def test_particle_is_not_part_of_the_match_and_the_word_still_lights_up():
    s = make_snippet("세종대왕", HANGUL)
    # Query and text both split 세종 + 대왕; the subject particle 이 is not highlighted.
    assert _marked(s) == ["세종대왕"]
    assert "세종대왕이 훈민정음을 만들었다." in s.text
    assert s.basis == "terms" and s.matched_terms == ["세종", "대왕"]
    ((a, b),) = s.highlights
    assert HANGUL[a:b] == "세종대왕" and HANGUL[b] == "이"
    _consistent(s, HANGUL)


def test_verb_ending_matches_the_dictionary_form_of_the_query():
    s = make_snippet("만들다", HANGUL)
    assert _marked(s) == ["만들"]  # 만들었다: the stem matched, the ending 었다 is not marked
    assert "만들었다" in s.text


def test_several_matches_in_one_sentence_pick_that_sentence():
    s = make_snippet("한글 창제", HANGUL)
    assert s.text == f"{ELLIPSIS} 한글은 1443년에 창제되었고 1446년에 반포되었다. {ELLIPSIS}"
    assert _marked(s) == ["한글", "창제"]
    # highlights cover the whole chunk: 한글 occurs twice, 창제 once
    assert [HANGUL[a:b] for a, b in s.highlights] == ["한글", "창제", "한글"]
    _consistent(s, HANGUL)


def test_terms_spread_over_sentences_take_each_sentence_in_text_order():
    s = make_snippet("훈민정음을 만든 왕", HANGUL, max_chars=200)
    assert s.basis == "terms"
    assert s.text == f"{ELLIPSIS} 세종대왕이 훈민정음을 만들었다. 그는 조선의 네 번째 왕이었다. {ELLIPSIS}"
    assert _marked(s) == ["훈민정음", "만들", "왕"]


def test_a_sentence_that_adds_no_new_term_is_not_added():
    text = "한글은 과학적이다. 한글은 아름답다. 훈민정음은 책 이름이다."
    s = make_snippet("한글 훈민정음", text)
    assert "아름답다" not in s.text  # the second 한글 sentence repeats a term already shown
    assert s.text == f"한글은 과학적이다. {ELLIPSIS} 훈민정음은 책 이름이다."


def test_budget_limits_how_many_sentences_are_shown():
    s = make_snippet("훈민정음을 만든 왕", HANGUL, max_chars=30)
    assert s.text == f"{ELLIPSIS} 세종대왕이 훈민정음을 만들었다. {ELLIPSIS}"


def test_no_match_falls_back_to_the_opening_sentence():
    s = make_snippet("대한민국 헌법", HANGUL)
    assert s.basis == "lead" and s.spans == [] and s.highlights == [] and s.matched_terms == []
    assert s.text == f"조선은 1392년에 세워졌다. {ELLIPSIS}"


def test_no_term_but_shared_characters_pick_the_closest_sentence():
    # Kiwi reads 한글날 as one noun: no term in common with 한글, but the bigram 한글 is shared.
    s = make_snippet("한글날", HANGUL)
    assert s.basis == "overlap" and s.spans == []
    assert s.text == f"{ELLIPSIS} 한글은 1443년에 창제되었고 1446년에 반포되었다. {ELLIPSIS}"


def test_latin_terms_match_case_insensitively():
    text = "Python으로 검색 엔진을 만든다. 다른 문장이다."
    s = make_snippet("python 검색", text)
    assert _marked(s) == ["Python", "검색"]


def test_long_sentence_is_cut_around_the_matches_with_ellipses():
    filler_a = " ".join(f"앞부분{i}의" for i in range(40))
    filler_b = " ".join(f"뒷부분{i}은" for i in range(40))
    text = f"{filler_a} 세종대왕이 훈민정음을 만들었고 {filler_b} 끝났다."
    s = make_snippet("훈민정음 만들다", text, max_chars=60)
    assert s.text.startswith(ELLIPSIS + " ") and s.text.endswith(" " + ELLIPSIS)
    body = s.text[2:-2]
    assert len(body) <= 60
    assert body in text  # a contiguous window of the sentence
    assert not body.startswith(" ") and (text[text.index(body) - 1] == " ")  # cut at a space, not mid-word
    assert _marked(s) == ["훈민정음", "만들"]
    _consistent(s, text)


def test_a_compound_kiwi_reads_differently_in_context_is_not_claimed_as_a_match():
    # In this context Kiwi reads 세종대왕 as one proper noun, while the query alone splits 세종 + 대왕: BM25
    # does not match it, so the highlight does not pretend it did.
    filler = " ".join(f"앞부분{i}의" for i in range(40))
    text = f"{filler} 세종대왕이 훈민정음을 만들었다."
    s = make_snippet("세종대왕 훈민정음", text, max_chars=60)
    assert SnippetMaker("세종대왕").terms == ["세종", "대왕"]
    assert "세종대왕" in KiwiBM25Encoder().terms(text)  # what the sparse branch indexed for this text
    assert _marked(s) == ["훈민정음"] and s.matched_terms == ["훈민정음"]


def test_text_cut_mid_sentence_keeps_offsets_right():
    # A chunk that starts inside a sentence (overlap from the previous chunk) and ends inside one.
    text = "었다고 전한다. 집현전 학자들이 한글 창제를 도왔다. 그리고 이어서"
    s = make_snippet("집현전 학자", text)
    assert s.text == f"{ELLIPSIS} 집현전 학자들이 한글 창제를 도왔다. {ELLIPSIS}"
    assert _marked(s) == ["집현전", "학자"]
    _consistent(s, text)
    first = make_snippet("한글", "한글 창제를 도왔다. 그리고")
    assert first.text.startswith("한글") and not first.text.startswith(ELLIPSIS)


def test_whole_chunk_snippet_has_no_ellipsis():
    s = make_snippet("세종대왕", "세종대왕이 한글을 만들었다.")
    assert s.text == "세종대왕이 한글을 만들었다." and ELLIPSIS not in s.text


def test_empty_and_blank_text():
    assert make_snippet("한글", "").text == ""
    assert make_snippet("한글", "   ").basis == "empty"


def test_query_without_content_terms_still_gives_a_snippet():
    s = make_snippet("은는이가", HANGUL)  # only particles: the sparse branch has no terms either
    assert s.basis in ("lead", "overlap") and s.spans == []


def test_maker_uses_the_encoders_tags():
    nouns_only = KiwiBM25Encoder(tag_prefixes=("NN",))
    s = SnippetMaker("세종대왕이 만들다", nouns_only).make(HANGUL)
    assert _marked(s) == ["세종대왕"]  # the verb stem is not a term for this encoder
    assert SnippetMaker("세종대왕이 만들다").terms == ["세종", "대왕", "만들"]


@pytest.mark.parametrize("query", ["세종대왕", "한글 창제", "왕", "1443년"])
def test_spans_match_highlights_for_many_queries(query):
    s = make_snippet(query, HANGUL, max_chars=50)
    _consistent(s, HANGUL)
    assert len(s.text.replace(ELLIPSIS, "").strip()) <= 60


def test_make_many_batches_the_analysis_and_agrees_with_make():
    texts = [HANGUL, "", "세종대왕이 한글을 만들었다.", "   ", "김치는 발효 음식이다."]
    maker = SnippetMaker("세종대왕 한글")
    assert maker.make_many(texts) == [maker.make(t) for t in texts]
