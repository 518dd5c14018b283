"""The chunker on its own: window sizes, section boundaries, overlap, over-long sentences, char spans.

Most tests count one token per character, so every expected size can be read off the test text; one test
uses the tiny model's tokenizer (the default model's real XLM-R tokenizer) to check the promise that matters
to the encoder: no chunk is longer than the model window it was cut for.
"""

from __future__ import annotations

import pytest

from kret.errors import ConfigError
from kret.indexer.chunker import Chunker, ChunkingParams
from kret.indexer.document import Document


def chars(texts):
    return [len(t) for t in texts]


def char_offsets(text):
    return [(i, i + 1) for i in range(len(text))]


def chunker(size: int, overlap: int = 0, offsets=char_offsets) -> Chunker:
    return Chunker(chars, ChunkingParams(chunk_tokens=size, overlap_tokens=overlap), offsets)


def doc(text: str, title: str = "") -> Document:
    return Document(doc_id="d", text=text, path="d.txt", source_type="txt", title=title)


def test_a_document_that_fits_is_one_chunk_with_its_span():
    text = "첫 문단입니다.\n\n둘째 문단입니다."
    [c] = chunker(100).chunk(doc(text, title="제목"))
    assert (c.doc_id, c.chunk_index, c.title, c.heading) == ("d", 0, "제목", "")
    assert c.text == text and (c.start_char, c.end_char) == (0, len(text))


def test_headings_close_sections_and_label_the_chunks_after_them():
    text = "머리말.\n# 역사\n조선 시대.\n\n## 현대\n오늘날."
    chunks = chunker(100).chunk(doc(text))
    assert [(c.heading, c.text) for c in chunks] == [
        ("", "머리말."),
        ("역사", "조선 시대."),
        ("현대", "오늘날."),
    ]
    assert [c.chunk_index for c in chunks] == [0, 1, 2]
    for c in chunks:
        assert text[c.start_char : c.end_char].strip() == c.text  # a span may end after the newline
        assert "#" not in c.text


def test_every_chunk_fits_the_budget_and_every_paragraph_is_kept():
    paras = [f"문단{i}" + "가" * (10 + 7 * i) for i in range(8)]  # each fits on its own (≤ 62)
    chunks = chunker(64).chunk(doc("\n\n".join(paras)))
    assert len(chunks) > 1
    assert all(len(c.text) <= 64 for c in chunks)
    for p in paras:
        assert any(p in c.text for c in chunks), p
    # Without overlap each paragraph is in exactly one chunk, in order.
    assert [p for c in chunks for p in paras if p in c.text] == paras


def test_title_and_heading_take_their_share_of_the_window():
    ch = chunker(100)
    assert ch.budget_for("", "") == 100
    assert ch.budget_for("제목", "절") == 100 - len("제목 절") - 1
    assert ch.budget_for("긴" * 200, "") == 32  # never below the minimum budget
    paras = ["나" * 30 for _ in range(6)]
    for c in ch.chunk(doc("\n\n".join(paras), title="가" * 39)):
        assert len(c.text) <= 100 - 40


def test_overlap_repeats_trailing_units_but_never_a_whole_chunk():
    paras = [f"P{i}" + "다" * 18 for i in range(10)]  # 20 tokens each
    text = "\n\n".join(paras)
    plain = chunker(65).chunk(doc(text))
    lapped = chunker(65, overlap=25).chunk(doc(text))
    assert len(lapped) > len(plain)
    for a, b in zip(lapped, lapped[1:], strict=False):
        assert b.text.split()[0] == a.text.split()[-1]  # b starts with the last paragraph of a
        assert b.text != a.text and len(b.text) <= 65
    assert all(p in "\n".join(c.text for c in lapped) for p in paras)


@pytest.mark.xfail(
    strict=True,
    reason="known defect, reported to the lead: a paragraph's span ends after its newline, so paragraphs "
    "separated by one blank line look adjacent to _join and rejoin with a space, not the newline its docstring "
    "promises. Fixing it changes chunk text (and so indexes and benchmark numbers): a lead's decision.",
)
def test_paragraphs_rejoin_with_a_newline():
    paras = ["가" * 20, "나" * 20, "다" * 20]
    [c] = chunker(40 + 30).chunk(doc("\n\n".join(paras) + "\n\n" + "라" * 50))[:1]
    assert c.text == "\n".join(paras)


def test_overlap_must_be_smaller_than_the_window():
    with pytest.raises(ConfigError, match="overlap"):
        chunker(32, overlap=32)


def test_an_over_long_sentence_is_cut_at_token_boundaries_without_losing_or_doubling_text():
    sentence = "".join(chr(0xAC00 + i) for i in range(150))  # one "sentence", no spaces, 150 tokens
    chunks = chunker(40).chunk(doc(sentence))
    assert len(chunks) == 4 and all(len(c.text) <= 40 for c in chunks)
    assert "".join(c.text for c in chunks) == sentence
    assert [(c.start_char, c.end_char) for c in chunks] == [(0, 40), (40, 80), (80, 120), (120, 150)]


def test_without_token_offsets_the_cut_is_proportional_and_still_fits():
    sentence = "".join(chr(0xAC00 + i) for i in range(150))
    chunks = chunker(40, offsets=None).chunk(doc(sentence))
    assert all(len(c.text) <= 40 for c in chunks)
    assert "".join(c.text for c in chunks) == sentence


def test_long_paragraphs_split_at_korean_sentence_ends():
    sentences = [f"{i}번째 문장은 여기에서 끝난다." for i in range(12)]
    para = " ".join(sentences)
    chunks = chunker(60).chunk(doc(para))
    assert len(chunks) > 1
    for c in chunks:
        assert len(c.text) <= 60
        assert c.text.endswith("끝난다.")  # Kiwi's sentence boundary, not a mid-sentence cut
    assert " ".join(c.text for c in chunks) == para


def test_chunks_fit_the_real_tokenizer_window(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))

    def count(texts):
        return [len(ids) for ids in tok(list(texts), add_special_tokens=False)["input_ids"]] if texts else []

    def offsets(text):
        return [
            tuple(x)
            for x in tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        ]

    ch = Chunker(count, ChunkingParams(chunk_tokens=48, overlap_tokens=8), offsets)
    body = "\n\n".join(
        [
            "세종대왕은 조선의 제4대 국왕이다. 훈민정음을 창제하였다. " * 3,
            "한글날은 10월 9일이다. " * 5,
            "가" * 300,
        ]
    )
    chunks = ch.chunk(doc(body, title="세종"))
    assert len(chunks) > 3
    for c in chunks:
        assert count([c.text])[0] <= ch.budget_for("세종", c.heading)
        assert count([c.embed_text])[0] <= 48 + 1  # title and text join with one space


def test_lexical_text_repeats_the_title_the_embedded_text_drops() -> None:
    from kret.indexer.document import AS_EMBEDDED, TITLE_ALWAYS, Chunk

    c = Chunk("d", 0, "훈민정음은 한글의 옛 이름이다.", title="훈민정음", heading="개요")
    assert c.embed_text == "개요 훈민정음은 한글의 옛 이름이다."
    assert c.lexical_text(TITLE_ALWAYS) == c.titled_text == "훈민정음 개요 훈민정음은 한글의 옛 이름이다."
    assert c.lexical_text(AS_EMBEDDED) == c.embed_text
    assert Chunk("d", 0, "본문").lexical_text(TITLE_ALWAYS) == "본문"
    with pytest.raises(ValueError, match="unknown lexical text rule"):
        c.lexical_text("title-twice")


def test_an_unknown_recorded_lexical_rule_is_refused() -> None:
    from kret.engine.collection import recorded_lexical_text
    from kret.errors import StoreError

    assert recorded_lexical_text({"sparse": {"k1": 1.2}}) == "as-embedded"  # made before it was recorded
    assert recorded_lexical_text({"sparse": {"text": "title-always"}}) == "title-always"
    with pytest.raises(StoreError, match="unknown lexical text rule 'x'"):
        recorded_lexical_text({"sparse": {"text": "x"}})


def parts_text() -> str:
    """Headings, paragraphs, blank lines and one line far longer than a slice (cut at spaces): every kind of
    place a part boundary could fall."""
    paras = []
    for i in range(30):
        if i % 7 == 0:
            paras.append(f"# 절 {i}")
        paras.append("\n".join(f"{i}번째 문단의 {j}번째 줄입니다." for j in range(1 + i % 4)))
        if i == 12:
            paras.append(" ".join(f"긴줄{k}" for k in range(300)))  # ~2,000 characters, no newline
    return "\n\n".join(paras) + "\n"


def test_parts_resume_from_any_cursor_with_exactly_the_chunks_of_an_uninterrupted_run(monkeypatch):
    """A resumed large document (engine/ingest.py) starts at a part's cursor without walking the text
    before it; that is only correct if the chunks from there on, ids included, are those an uninterrupted
    run produces — whatever the boundary fell on (a heading, a blank line, an over-long line's cut)."""
    from kret.indexer import chunker as chunker_mod
    from kret.indexer.chunker import PartCursor

    monkeypatch.setattr(chunker_mod, "MAX_SLICE_CHARS", 150)  # the long line is cut into slices
    ch = chunker(60, 10)
    d = doc(parts_text(), title="제목")
    parts = list(ch.iter_parts(d, 200))
    assert len(parts) > 5
    chunks = [c for p in parts for c in p.chunks]
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))
    assert parts[-1].cursor.next_char == len(d.text)
    assert {c.heading for c in chunks} >= {"절 0", "절 7", "절 14"}
    # in document order: spans never go back
    assert all(a.start_char <= b.start_char for a, b in zip(chunks, chunks[1:], strict=False))
    for n, p in enumerate(parts):
        cursor = p.cursor
        rest = [c for q in ch.iter_parts(d, 200, cursor) for c in q.chunks]
        assert rest == [c for q in parts[n + 1 :] for c in q.chunks], f"resume after part {n}"
    assert PartCursor() == PartCursor(0, 0, "")


def test_the_block_walk_restarts_at_any_paragraph_end_even_inside_an_over_long_line():
    """Every paragraph block's end is a cursor a large document can resume at: after a restart there the walk
    yields exactly what the whole walk yielded after it — also inside a line cut at spaces, whose rest must be
    cut as before and never read as a line (which would join the next lines, or look like a heading)."""
    from kret.indexer.chunker import _iter_blocks

    text = "앞 문단\n\n" + " ".join(f"단어{k}" for k in range(100)) + "#없음\n뒤 줄\n# 절\n끝 줄\n"
    walk = list(_iter_blocks(text, 60))
    paras = [i for i, b in enumerate(walk) if b[0] == "para"]
    assert len(paras) > 6 and any(text[walk[i][3]] not in "\n" for i in paras)  # cuts inside the line
    for i in paras:
        assert list(_iter_blocks(text, 60, start=walk[i][3])) == walk[i + 1 :], f"restart after block {i}"


def test_a_file_that_is_one_line_still_comes_in_bounded_parts():
    ch = chunker(60, 10)
    text = " ".join(f"{i}번째 문장입니다." for i in range(3_000))  # ~33,000 characters, no newline
    parts = list(ch.iter_parts(doc(text), 2_000))
    assert len(parts) > 10
    assert max(p.chunks[-1].end_char - p.chunks[0].start_char for p in parts) <= 4_000
    whole = [c for p in parts for c in p.chunks]
    assert "2999번째" in whole[-1].text and whole[0].text.startswith("0번째")
