"""Loaders and text cleaning: every format from fixtures generated at run time, plus the failure paths."""

from __future__ import annotations

import codecs
import json
import os
import struct
import unicodedata
import zipfile
import zlib
from pathlib import Path

import pytest

from kret.errors import LoaderError, UserInputError
from kret.indexer import loaders
from kret.indexer.clean import clean_text
from kret.indexer.loaders import (
    HWPTAG_PARA_TEXT,
    SUPPORTED_SUFFIXES,
    decode_hwp_para_text,
    decode_text,
    discover,
    hwp_section_paragraphs,
    iter_hwp_records,
    load_file,
    load_file_report,
)

KO = "한국어 검색 엔진은 형태소 분석으로 색인합니다.\n\n두 번째 문단입니다."


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


def load_one(path: Path, root: Path | None = None):
    docs = load_file(path, root or path.parent)
    assert len(docs) == 1, docs
    return docs[0]


# ---------------------------------------------------------------------------------------------- clean


def test_clean_nfd_becomes_nfc():
    nfd = unicodedata.normalize("NFD", "한글 파일")
    assert nfd != "한글 파일"
    assert clean_text(nfd) == "한글 파일"


def test_loaded_nfd_text_and_title_become_nfc(tmp_path):
    md = unicodedata.normalize("NFD", "# 맥에서 쓴 제목\n\n자모가 분리된 본문")
    doc = load_one(write(tmp_path / "mac.md", md))
    assert doc.title == "맥에서 쓴 제목"
    assert doc.text == "# 맥에서 쓴 제목\n\n자모가 분리된 본문"


def test_clean_whitespace_and_controls():
    raw = "  첫\u00a0줄\u3000끝   \r\n둘째\x00줄\x07\t탭 \r\r\r\n\n\n셋째\u200b줄\x0c넷째  \n"
    assert clean_text(raw) == "첫 줄 끝\n둘째줄\t탭\n\n셋째줄\n\n넷째"


def test_clean_keeps_single_blank_lines_and_strips_ends():
    assert clean_text("\n\n a\n\nb\n \nc\n\n") == "a\n\nb\n\nc"
    assert clean_text("") == ""
    assert clean_text("a\ud800b") == "ab"  # lone surrogate from broken UTF-16
    assert clean_text(" \t\n ") == ""


# ---------------------------------------------------------------------------------------------- encodings


@pytest.mark.parametrize(
    "encoded",
    [
        KO.encode("utf-8"),
        codecs.BOM_UTF8 + KO.encode("utf-8"),
        KO.encode("utf-16"),  # with BOM (native order)
        codecs.BOM_UTF16_BE + KO.encode("utf-16-be"),
        KO.encode("cp949"),
        KO.encode("euc-kr"),
    ],
    ids=["utf8", "utf8-bom", "utf16", "utf16-be", "cp949", "euc-kr"],
)
def test_txt_encodings(tmp_path, encoded):
    doc = load_one(write(tmp_path / "a.txt", encoded))
    assert doc.text == KO
    assert doc.title == ""


def test_cp949_only_syllables_are_not_mojibake():
    text = "똠방각하 햏 뷁 - 확장 완성형"  # 똠/햏/뷁 exist in cp949 but not in EUC-KR
    assert decode_text(text.encode("cp949")) == text


def test_western_legacy_text_falls_back_to_detection():
    text = (
        "Le château est situé près de la rivière. Les élèves étaient très contents de la fête à l'école. "
        "Où est le garçon? Il a mangé une crêpe."
    )
    assert decode_text(text.encode("cp1252")) == text


def test_binary_file_rejected(tmp_path):
    path = write(tmp_path / "blob.txt", b"abc\x00\x01\x02" * 10)
    with pytest.raises(LoaderError, match="binary"):
        load_file(path, tmp_path)


def test_txt_fields_and_empty_file(tmp_path):
    path = write(tmp_path / "sub" / "note.txt", "  hello\r\nworld  ")
    doc = load_one(path, tmp_path)
    assert doc.doc_id == "sub/note.txt"
    assert doc.path == str(path.absolute())
    assert doc.source_type == "txt"
    assert doc.mtime == pytest.approx(path.stat().st_mtime)
    assert doc.metadata == {}
    assert doc.text == "hello\nworld"
    assert load_file(write(tmp_path / "empty.txt", b""), tmp_path) == []
    assert load_file(write(tmp_path / "blank.txt", " \n\n\t"), tmp_path) == []


# ---------------------------------------------------------------------------------------------- markdown


def test_markdown_front_matter_and_headings(tmp_path):
    md = (
        '---\ntitle: "설치 안내"\ntags: [a, b]\n---\n\n# 시작하기\n\n본문 [링크](http://x.y/z) 와 ![그림](i.png).\n\n'
        "```bash\n# not a heading\n```\n\n## 설정\n\n내용\n\n부제\n---\n\n끝\n"
    )
    doc = load_one(write(tmp_path / "guide.markdown", md))
    assert doc.source_type == "md"
    assert doc.title == "설치 안내"
    assert "tags:" not in doc.text and "---" not in doc.text.split("\n")[0]
    assert doc.text.startswith("# 시작하기")
    assert "\n## 설정\n" in doc.text
    assert "\n## 부제\n" in doc.text  # setext heading rewritten
    assert "본문 링크 와 그림." in doc.text
    assert "# not a heading" in doc.text  # code kept verbatim


def test_markdown_title_from_first_h1_not_code(tmp_path):
    md = "intro\n\n```\n# comment\n```\n\n## Sub\n\n# Real **Title**\n\ntext"
    assert load_one(write(tmp_path / "a.md", md)).title == "Real Title"
    assert load_one(write(tmp_path / "b.md", "no heading here")).title == ""


# ---------------------------------------------------------------------------------------------- HTML


def test_html_euc_kr_meta_scripts_and_headings(tmp_path):
    html = (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=euc-kr">'
        "<title>문서 제목</title><style>p{color:red}</style><script>var x = '스크립트';</script></head>"
        "<body><nav>메뉴 링크</nav><h1>큰 제목</h1><p>첫   문단\n이어지는 줄</p>"
        "<h2>작은 <b>제목</b></h2><div>둘째<br>줄바꿈</div>"
        "<table><tr><th>이름</th><th>값</th></tr><tr><td>가</td><td>1</td></tr></table>"
        "<!-- 주석 --><footer>저작권</footer></body></html>"
    )
    doc = load_one(write(tmp_path / "page.htm", html.encode("euc-kr")))
    assert doc.source_type == "html"
    assert doc.title == "문서 제목"
    for gone in ("스크립트", "color", "메뉴", "저작권", "주석"):
        assert gone not in doc.text
    lines = doc.text.split("\n")
    assert "# 큰 제목" in lines
    assert "## 작은 제목" in lines
    assert "첫 문단 이어지는 줄" in lines
    assert "둘째" in lines and "줄바꿈" in lines
    assert "이름 | 값" in lines and "가 | 1" in lines


def test_html_title_falls_back_to_h1_and_meta_charset_utf8(tmp_path):
    html = '<meta charset="utf-8"><body><h1>헤딩 <i>제목</i></h1><p>본문</p></body>'
    doc = load_one(write(tmp_path / "x.html", html))
    assert doc.title == "헤딩 제목"
    assert doc.text == "# 헤딩 제목\n\n본문"


# ---------------------------------------------------------------------------------------------- PDF


def make_pdf(lines: list[str], title: str | None = "Hello PDF") -> bytes:
    """A minimal valid one-page PDF with ASCII text in the standard Helvetica font."""

    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    ops = ["BT", "/F1 12 Tf", "72 720 Td"]
    for i, line in enumerate(lines):
        if i:
            ops.append("0 -16 Td")
        ops.append(f"({esc(line)}) Tj")
    ops.append("ET")
    content = "\n".join(ops).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
    ]
    if title is not None:
        objects.append(f"<< /Title ({esc(title)}) >>".encode("latin-1"))
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n" % (len(objects) + 1)
    out += b"0000000000 65535 f \n"
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    info = b" /Info 6 0 R" if title is not None else b""
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, info, xref)
    return bytes(out)


def test_pdf_text_and_title(tmp_path):
    doc = load_one(write(tmp_path / "a.pdf", make_pdf(["Hello World", "Retrieval (BM25) works"])))
    assert doc.source_type == "pdf"
    assert doc.title == "Hello PDF"
    assert "Hello World" in doc.text
    assert "Retrieval (BM25) works" in doc.text


def test_pdf_corrupt_and_truncated(tmp_path):
    with pytest.raises(LoaderError, match="corrupt PDF"):
        load_file(write(tmp_path / "bad.pdf", b"%PDF-1.4\nthis is not a pdf at all"), tmp_path)
    with pytest.raises(LoaderError):
        load_file(write(tmp_path / "cut.pdf", make_pdf(["Hello"])[:150]), tmp_path)


def _encrypt(pdf: bytes, user_password: str) -> bytes:
    import io

    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def test_pdf_encrypted(tmp_path):
    locked = write(tmp_path / "locked.pdf", _encrypt(make_pdf(["Secret text"]), "secret"))
    with pytest.raises(LoaderError, match="encrypted PDF"):
        load_file(locked, tmp_path)
    # An empty user password only restricts permissions: the text must still be readable.
    open_pdf = write(tmp_path / "open.pdf", _encrypt(make_pdf(["Readable text"]), ""))
    assert "Readable text" in load_one(open_pdf).text


def test_pdf_without_text_reports_problem(tmp_path):
    docs, problems = load_file_report(write(tmp_path / "scan.pdf", make_pdf([], title=None)), tmp_path)
    assert docs == []
    assert any("no extractable text" in p for p in problems)


# ---------------------------------------------------------------------------------------------- DOCX


def make_docx(path: Path, title: str | None = None) -> Path:
    import docx

    document = docx.Document()
    if title:
        document.core_properties.title = title
    document.add_paragraph("머리말 문단입니다.")
    document.add_heading("검색 시스템 개요", level=1)
    document.add_paragraph("형태소 분석기를 사용합니다.")
    document.add_heading("세부 사항", level=2)
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "항목"
    table.cell(0, 1).text = "설명"
    table.cell(1, 0).text = "BM25"
    table.cell(1, 1).text = "희소 검색"
    document.add_paragraph("표 다음 문단.")
    document.save(str(path))
    return path


def test_docx_paragraphs_headings_tables(tmp_path):
    doc = load_one(make_docx(tmp_path / "r.docx"))
    assert doc.source_type == "docx"
    assert doc.title == "검색 시스템 개요"  # no core title: first heading
    lines = doc.text.split("\n")
    assert lines[0] == "머리말 문단입니다."
    assert "# 검색 시스템 개요" in lines
    assert "## 세부 사항" in lines
    assert "항목 | 설명" in lines and "BM25 | 희소 검색" in lines
    assert doc.text.index("BM25") < doc.text.index("표 다음 문단.")  # document order kept


def test_docx_core_title_and_corrupt(tmp_path):
    assert load_one(make_docx(tmp_path / "t.docx", title="보고서")).title == "보고서"
    with pytest.raises(LoaderError, match="corrupt DOCX"):
        load_file(write(tmp_path / "bad.docx", b"PK\x03\x04 definitely not a zip"), tmp_path)
    with pytest.raises(LoaderError, match="not a DOCX"):
        load_file(write(tmp_path / "old.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600), tmp_path)


# ---------------------------------------------------------------------------------------------- HWPX

HP = "http://www.hancom.co.kr/hwpml/2011/paragraph"


def hwpx_section(*paragraphs: str) -> str:
    body = "".join(paragraphs)
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><hs:sec xmlns:hs="http://www.hancom.co.kr/hwpml/2011/section"'
        f' xmlns:hp="{HP}">{body}</hs:sec>'
    )


def p(*runs: str) -> str:
    return "<hp:p>" + "".join(f"<hp:run>{r}</hp:run>" for r in runs) + "</hp:p>"


def make_hwpx(path: Path, sections: dict[str, str], extra: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mimetype", "application/hwp+zip")
        for name, xml in {**sections, **(extra or {})}.items():
            zf.writestr(name, xml)
    return path


def test_hwpx_text_order_tables_and_inline(tmp_path):
    table = (
        "<hp:tbl><hp:tr><hp:tc><hp:subList>"
        + p("<hp:t>셀 하나</hp:t>")
        + "</hp:subList></hp:tc><hp:tc><hp:subList>"
        + p("<hp:t>셀 둘</hp:t>")
        + "</hp:subList></hp:tc></hp:tr></hp:tbl>"
    )
    sections = {
        "Contents/section0.xml": hwpx_section(
            p("<hp:t>첫 문단</hp:t>"),
            p("<hp:t>탭<hp:tab/>다음</hp:t>", "<hp:t> 이어서</hp:t>"),
            p(table),
        ),
        "Contents/section2.xml": hwpx_section(p("<hp:t>셋째 구역</hp:t>")),
        "Contents/section10.xml": hwpx_section(p("<hp:t>열째 구역</hp:t>")),
    }
    doc = load_one(make_hwpx(tmp_path / "a.hwpx", sections))
    assert doc.source_type == "hwpx"
    assert doc.title == ""
    assert doc.text == "첫 문단\n\n탭\t다음 이어서\n\n셀 하나\n\n셀 둘\n\n셋째 구역\n\n열째 구역"


def test_hwpx_title_and_errors(tmp_path):
    hpf = '<opf:package xmlns:opf="http://www.idpf.org/2007/opf/"><opf:metadata><opf:title>제목</opf:title></opf:metadata></opf:package>'
    sections = {"Contents/section0.xml": hwpx_section(p("<hp:t>본문</hp:t>"))}
    path = make_hwpx(tmp_path / "t.hwpx", sections, {"Contents/content.hpf": hpf})
    assert load_one(path).title == "제목"
    with pytest.raises(LoaderError, match="not a zip"):
        load_file(write(tmp_path / "bad.hwpx", b"garbage"), tmp_path)
    with pytest.raises(LoaderError, match="no Contents/section"):
        load_file(make_hwpx(tmp_path / "empty.hwpx", {}), tmp_path)
    with pytest.raises(LoaderError, match="corrupt HWPX"):
        load_file(make_hwpx(tmp_path / "x.hwpx", {"Contents/section0.xml": "<a><b>"}), tmp_path)


# ---------------------------------------------------------------------------------------------- HWP


def record(tag: int, payload: bytes, level: int = 0) -> bytes:
    size = len(payload)
    if size >= 0xFFF:
        return struct.pack("<II", tag | (level << 10) | (0xFFF << 20), size) + payload
    return struct.pack("<I", tag | (level << 10) | (size << 20)) + payload


def utf16(text: str) -> bytes:
    return text.encode("utf-16-le")


def ctrl(code: int) -> bytes:
    """An 8-unit extended/inline control: code, 6 parameter units (here: visible letters), code."""
    return struct.pack("<H", code) + utf16("PARAMS") + struct.pack("<H", code)


def test_hwp_record_parser():
    long_payload = b"x" * 5000
    data = (
        record(66, b"\x01\x02", level=0)
        + record(HWPTAG_PARA_TEXT, utf16("가"), level=1)
        + record(99, long_payload)
    )
    assert list(iter_hwp_records(data)) == [(66, 0, b"\x01\x02"), (67, 1, utf16("가")), (99, 0, long_payload)]
    assert list(iter_hwp_records(b"")) == []
    with pytest.raises(LoaderError, match="truncated|past the end"):
        list(iter_hwp_records(record(67, utf16("가나다"))[:-1]))
    with pytest.raises(LoaderError, match="truncated"):
        list(iter_hwp_records(b"\x43\x00"))


def test_hwp_para_text_controls():
    payload = (
        utf16("표 앞")
        + ctrl(11)  # table/shape object: its parameters must not leak
        + utf16("뒤")
        + ctrl(9)  # tab is an inline control of 8 units
        + utf16("탭")
        + struct.pack("<H", 10)  # line break, one unit
        + utf16("둘째 줄")
        + ctrl(3)  # field start
        + utf16("필드")
        + ctrl(4)  # field end
        + struct.pack("<H", 30)  # bound space
        + utf16("😀")  # surrogate pair survives
        + struct.pack("<H", 13)  # paragraph end
    )
    assert decode_hwp_para_text(payload) == "표 앞뒤\t탭\n둘째 줄필드 😀\n"


def test_hwp_section_decoding_compressed_and_plain():
    records = (
        record(66, b"\0" * 22)
        + record(HWPTAG_PARA_TEXT, utf16("첫 문단") + struct.pack("<H", 13))
        + record(68, b"\0" * 12)
        + record(HWPTAG_PARA_TEXT, utf16("둘째 문단") + struct.pack("<H", 13), level=1)
    )
    assert hwp_section_paragraphs(records, compressed=False) == ["첫 문단", "둘째 문단"]
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw = deflater.compress(records) + deflater.flush()
    assert hwp_section_paragraphs(raw, compressed=True) == ["첫 문단", "둘째 문단"]
    with pytest.raises(LoaderError, match="decompress"):
        hwp_section_paragraphs(b"\xff\xff\xff not deflate", compressed=True)


def make_cfb(streams: dict[str, bytes]) -> bytes:
    """A minimal OLE compound file (v3) holding ``FileHeader`` and ``BodyText/Section0``.

    Streams are padded to 4096 bytes so that they live in regular sectors and no mini stream is needed.
    """
    sector = 512
    end, free, fatsect, nostream = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD, 0xFFFFFFFF
    header_stream = streams["FileHeader"].ljust(4096, b"\0")
    section = streams["BodyText/Section0"]
    section = section + b"\0" * (max(4096, len(section)) - len(section))
    data_sectors: list[bytes] = []
    fat = [fatsect, end]  # sector 0: FAT, sector 1: directory
    starts = []
    for blob in (header_stream, section):
        blob = blob + b"\0" * (-len(blob) % sector)
        first = 2 + len(data_sectors)
        n = len(blob) // sector
        starts.append((first, len(blob)))
        fat.extend(list(range(first + 1, first + n)) + [end])
        data_sectors.extend(blob[i * sector : (i + 1) * sector] for i in range(n))
    assert len(fat) <= 128
    fat_sector = struct.pack("<128I", *(fat + [free] * (128 - len(fat))))

    def entry(
        name: str, kind: int, left=nostream, right=nostream, child=nostream, start=end, size=0
    ) -> bytes:
        raw = name.encode("utf-16-le") + b"\0\0"
        return (
            raw.ljust(64, b"\0")
            + struct.pack("<HBB", len(raw), kind, 1)
            + struct.pack("<III", left, right, child)
            + b"\0" * 16
            + b"\0" * 4
            + b"\0" * 16
            + struct.pack("<IQ", start, size)
        )

    # Root -> FileHeader (left sibling: BodyText -> child Section0). Ordering: shorter names sort first.
    directory = (
        entry("Root Entry", 5, child=1)
        + entry("FileHeader", 2, left=2, start=starts[0][0], size=len(header_stream))
        + entry("BodyText", 1, child=3)
        + entry("Section0", 2, start=starts[1][0], size=len(section))
    )
    header = (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
        + b"\0" * 16
        + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6)
        + b"\0" * 6
        + struct.pack("<IIIIIIIII", 0, 1, 1, 0, 4096, end, 0, end, 0)
        + struct.pack("<109I", 0, *([free] * 108))
    )
    assert len(header) == sector and len(directory) == sector
    return header + fat_sector + directory + b"".join(data_sectors)


def hwp_file(flags: int, section: bytes) -> bytes:
    file_header = b"HWP Document File".ljust(32, b"\0") + struct.pack("<II", 0x05000300, flags)
    return make_cfb({"FileHeader": file_header.ljust(256, b"\0"), "BodyText/Section0": section})


def test_hwp_end_to_end_ole(tmp_path):
    records = record(HWPTAG_PARA_TEXT, utf16("한글 문서") + ctrl(11) + utf16(" 본문") + struct.pack("<H", 13))
    records += record(HWPTAG_PARA_TEXT, utf16("둘째 문단") + struct.pack("<H", 13))
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    compressed = deflater.compress(records) + deflater.flush()
    doc = load_one(write(tmp_path / "a.hwp", hwp_file(1, compressed)))
    assert doc.source_type == "hwp"
    assert doc.text == "한글 문서 본문\n\n둘째 문단"
    # Uncompressed: pad with a filler record so the stream is exactly as long as the records.
    plain = records + record(1, b"\0" * (4096 - len(records) - 4))
    assert load_one(write(tmp_path / "b.hwp", hwp_file(0, plain))).text == "한글 문서 본문\n\n둘째 문단"
    with pytest.raises(LoaderError, match="encrypted HWP"):
        load_file(write(tmp_path / "c.hwp", hwp_file(1 | 2, compressed)), tmp_path)


def test_hwp_not_ole(tmp_path):
    with pytest.raises(LoaderError, match="not an HWP"):
        load_file(write(tmp_path / "fake.hwp", b"just some text pretending to be hwp"), tmp_path)
    with pytest.raises(LoaderError, match="corrupt HWP"):
        load_file(write(tmp_path / "cut.hwp", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\1" * 100), tmp_path)


# ---------------------------------------------------------------------------------------------- JSONL


def test_jsonl_beir_rows_and_problems(tmp_path):
    rows = [
        json.dumps(
            {"_id": "d1", "title": "첫 문서", "text": "본문 하나", "lang": "ko", "tags": ["x"]},
            ensure_ascii=False,
        ),
        "{not json",
        json.dumps({"_id": "d2", "title": "제목만"}, ensure_ascii=False),
        "",
        json.dumps(
            {"id": 7, "contents": "pyserini 형식", "score": 1.5, "metadata": {"source": "wiki"}},
            ensure_ascii=False,
        ),
        json.dumps({"body": "아이디 없음\u2028줄 구분자"}, ensure_ascii=False),
        json.dumps({"_id": "d1", "text": "중복"}, ensure_ascii=False),
        json.dumps({"_id": "d3", "text": "   "}),
        "[1, 2]",
    ]
    path = write(tmp_path / "data" / "corpus.jsonl", "\n".join(rows) + "\n")
    docs, problems = load_file_report(path, tmp_path)
    assert [d.doc_id for d in docs] == ["data/corpus.jsonl#d1", "data/corpus.jsonl#7", "data/corpus.jsonl#6"]
    first, second, third = docs
    assert (first.title, first.text, first.source_type) == ("첫 문서", "본문 하나", "jsonl")
    assert first.metadata == {"lang": "ko", "source_id": "d1"}
    assert second.metadata == {"score": 1.5, "source": "wiki", "source_id": "7"}
    assert third.metadata == {} and third.text == "아이디 없음\n줄 구분자"
    assert problems == [
        "line 2: invalid JSON",
        "line 3: no text field (text/contents/body/content)",
        "line 7: duplicate id 'd1' (first on line 1), skipped",
        "line 8: empty text, skipped",
        "line 9: not a JSON object",
    ]
    assert load_file(path, tmp_path) == docs


def test_jsonl_all_bad_is_an_error(tmp_path):
    path = write(tmp_path / "bad.jsonl", '{"title": "no text"}\nnope\n')
    with pytest.raises(LoaderError, match="no usable row"):
        load_file(path, tmp_path)


def test_jsonl_cp949(tmp_path):
    line = json.dumps({"_id": "k", "text": "레거시 인코딩"}, ensure_ascii=False)
    assert load_one(write(tmp_path / "k.jsonl", line.encode("cp949"))).text == "레거시 인코딩"


# ---------------------------------------------------------------------------------------------- discover


def test_discover_recursion_hidden_and_roots(tmp_path):
    corpus = tmp_path / "corpus"
    write(corpus / "b.TXT", "b")
    write(corpus / "a.md", "a")
    write(corpus / "sub" / "deep" / "c.pdf", b"%PDF")
    write(corpus / "sub" / "ignore.png", b"png")
    write(corpus / ".git" / "config.txt", "hidden dir")
    write(corpus / ".hidden.txt", "hidden file")
    single = write(tmp_path / "other" / "one.jsonl", "{}")
    pairs = discover([corpus, str(single)])
    assert [(f.relative_to(tmp_path).as_posix(), r.relative_to(tmp_path).as_posix()) for f, r in pairs] == [
        ("corpus/a.md", "corpus"),
        ("corpus/b.TXT", "corpus"),
        ("corpus/sub/deep/c.pdf", "corpus"),
        ("other/one.jsonl", "other"),
    ]
    assert all(f.is_absolute() and r.is_absolute() for f, r in pairs)
    # An explicitly named hidden file is honoured; an unsupported one is skipped.
    assert discover([corpus / ".hidden.txt", corpus / "sub" / "ignore.png"]) == [
        (corpus / ".hidden.txt", corpus)
    ]


def test_discover_missing_path(tmp_path):
    with pytest.raises(UserInputError, match="nope"):
        discover([tmp_path / "nope"])


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
def test_discover_symlink_loop_and_duplicates(tmp_path):
    corpus = tmp_path / "corpus"
    write(corpus / "a.txt", "a")
    os.symlink(corpus, corpus / "loop")  # a folder that contains itself
    os.symlink(corpus / "a.txt", corpus / "z_link.txt")
    pairs = discover([corpus, corpus / "a.txt"])
    assert pairs == [(corpus / "a.txt", corpus)]


def test_doc_ids_stable_relative_and_nfc(tmp_path):
    name = unicodedata.normalize("NFD", "보고서.txt")
    corpus = tmp_path / "corpus"
    write(corpus / "폴더" / name, "내용")
    ((file, root),) = discover([corpus])
    first = load_one(file, root)
    assert first.doc_id == "폴더/보고서.txt"
    assert unicodedata.is_normalized("NFC", first.doc_id)
    # The same tree named through a different (relative) spelling yields the same id.
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        ((file2, root2),) = discover([Path("corpus")])
        assert load_one(file2, root2).doc_id == first.doc_id
    finally:
        os.chdir(cwd)


# ---------------------------------------------------------------------------------------------- failures


def test_permission_denied(tmp_path, monkeypatch):
    path = write(tmp_path / "secret.txt", "x")

    def deny(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", deny)
    with pytest.raises(LoaderError, match="^permission denied$"):
        load_file(path, tmp_path)


def test_unexpected_exception_becomes_loader_error(tmp_path, monkeypatch):
    def boom(data):
        raise ValueError("parser exploded")

    monkeypatch.setitem(loaders._EXTRACTORS, "md", boom)
    with pytest.raises(LoaderError, match="ValueError: parser exploded"):
        load_file(write(tmp_path / "a.md", "# x"), tmp_path)


def test_unsupported_suffix(tmp_path):
    with pytest.raises(LoaderError, match="unsupported"):
        load_file(write(tmp_path / "a.exe", "x"), tmp_path)
    assert {".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx", ".hwp", ".hwpx", ".jsonl"} == set(
        SUPPORTED_SUFFIXES
    )
