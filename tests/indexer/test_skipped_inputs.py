"""Every input that gives nothing to index is reported with a reason (issue 13, item 7): loaders that
tell why, and a summary (table and ``--json``) that lists what was skipped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kret.errors import LoaderError
from kret.indexer.loaders import decode_text, load_file_report

KO = "대한민국의 수도는 서울이다.\n한글은 세종대왕이 만들었다. (1443년)"


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


# ---------------------------------------------------------------------------------------------- encodings


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_without_bom_is_text_not_binary(tmp_path, encoding):
    path = _write(tmp_path / "windows.txt", KO.encode(encoding))
    docs, problems = load_file_report(path, tmp_path)
    assert [d.text for d in docs] == [KO] and problems == []


def test_utf16_without_bom_english_and_korean_mix():
    text = "Notes 2024\r\n회의록: 예산 검토 and next steps\r\n"
    assert decode_text(text.encode("utf-16-le")) == text


@pytest.mark.parametrize(
    "blob",
    [
        b"abc\x00\x01\x02" * 10,  # NULs only on odd offsets, but not text
        b"\x00\x01\x02garbage\x00" * 100,
        "hello".encode("utf-32-le"),  # UTF-32 without BOM is not UTF-16
        bytes(range(256)) * 4,
    ],
)
def test_binary_is_still_binary(tmp_path, blob):
    with pytest.raises(LoaderError, match="binary"):
        load_file_report(_write(tmp_path / "blob.txt", blob), tmp_path)


# ---------------------------------------------------------------------------------------------- JSONL


def test_jsonl_nul_byte_costs_its_line_not_the_file(tmp_path):
    rows = [
        json.dumps({"_id": "a", "text": "첫 줄"}, ensure_ascii=False).encode(),
        b'{"_id": "b", "text": "bro\x00ken"}',
        json.dumps({"_id": "c", "text": "셋째 줄"}, ensure_ascii=False).encode(),
    ]
    path = _write(tmp_path / "corpus.jsonl", b"\n".join(rows) + b"\n")
    from kret.indexer.loaders import skipped_entries

    docs, problems = load_file_report(path, tmp_path)
    assert [d.metadata["source_id"] for d in docs] == ["a", "c"]
    assert problems == ["line 2: NUL bytes (binary data)"]
    assert skipped_entries(str(path), docs, problems) == [
        {"path": f"{path}:2", "reason": "NUL bytes (binary data)"}
    ]


def test_jsonl_utf16_with_bom_keeps_working(tmp_path):
    line = json.dumps({"_id": "k", "text": "유니코드"}, ensure_ascii=False)
    path = _write(tmp_path / "u16.jsonl", (line + "\n").encode("utf-16"))
    docs, problems = load_file_report(path, tmp_path)
    assert [d.text for d in docs] == ["유니코드"] and problems == []


# ---------------------------------------------------------------------------------------------- reasons


def test_files_without_text_say_why(tmp_path):
    from kret.indexer.loaders import skipped_entries

    cases = {
        "empty.pdf": (b"", "empty file"),
        "empty.txt": (b"", "empty file"),
        "script.html": (
            b"<html><head><script>var x = 1;</script></head><body><script>go()</script></body></html>",
            "only markup or script",
        ),
        "blank.txt": (b"  \n\t \n", "only whitespace"),
        "blank.jsonl": (b"\n\n", "no rows"),
    }
    for name, (data, reason) in cases.items():
        path = _write(tmp_path / name, data)
        docs, problems = load_file_report(path, tmp_path)
        assert docs == []
        [row] = skipped_entries(str(path), docs, problems)
        assert row["path"] == str(path) and reason in row["reason"], (name, row)


def test_pypdf_damage_notes_stay_off_stderr(tmp_path):
    """pypdf logs "EOF marker not found" for a truncated PDF; without a handler Python prints it on stderr.

    A subprocess, because pytest installs its own logging handlers, which would hide the stray line."""
    path = _write(tmp_path / "cut.pdf", b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\n")
    code = (
        "import sys\nfrom pathlib import Path\nfrom kret.errors import LoaderError\n"
        "from kret.indexer.loaders import load_file_report\n"
        f"try:\n    load_file_report(Path({str(path)!r}), Path({str(tmp_path)!r}))\n"
        "except LoaderError as exc:\n    print(exc)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "corrupt PDF" in r.stdout
    assert r.stderr == ""


# ---------------------------------------------------------------------------------------------- summary


@pytest.fixture
def odd_inputs(tmp_path) -> Path:
    folder = tmp_path / "odd"
    _write(folder / "good.txt", KO)
    _write(folder / "zero.pdf", b"")
    _write(folder / "script.html", "<html><body><script>alert(1)</script><style>p{}</style></body></html>")
    _write(folder / "headings.md", "".join(f"# 제목 {i}\n\n" for i in range(300)))
    _write(
        folder / "rows.jsonl",
        "\n".join(
            [
                json.dumps({"_id": "r1", "text": "정상 문서"}, ensure_ascii=False),
                "{broken",
                json.dumps({"_id": "r3", "text": "또 다른 정상 문서"}, ensure_ascii=False),
            ]
        ),
    )
    _write(folder / "u16.txt", KO.encode("utf-16-le"))
    return folder


def test_index_summary_lists_every_skipped_input(tiny_kret, odd_inputs):
    s = tiny_kret.index([odd_inputs])
    assert s.failed == 0, s.failures
    skipped = {Path(row["path"]).name: row["reason"] for row in s.skipped}
    assert skipped.keys() == {"zero.pdf", "script.html", "headings.md", "rows.jsonl:2"}, skipped
    assert skipped["zero.pdf"] == "empty file"
    assert "only markup or script" in skipped["script.html"]
    assert "0 chunks" in skipped["headings.md"]
    assert skipped["rows.jsonl:2"] == "invalid JSON"
    assert s.added == 4  # good.txt, u16.txt and the two good JSONL rows; headings.md is not "added"
    assert s.to_dict()["skipped"] == s.skipped
    # A second run: the headings-only file is unchanged, but still reported (it is still unsearchable).
    again = tiny_kret.index([odd_inputs])
    assert again.unchanged == 4 and again.added == 0
    assert {Path(row["path"]).name for row in again.skipped} == set(skipped)


def test_cli_shows_skipped_in_table_and_json(tiny_model_dir, odd_inputs):
    from cli_runner import invoke

    env = {"KRET_MODEL": str(tiny_model_dir), "COLUMNS": "300"}
    r = invoke(["index", str(odd_inputs), "--json"], env=env)
    assert r.exit_code == 0, r.stderr
    summary = json.loads(r.stdout)
    assert {Path(row["path"]).name for row in summary["skipped"]} >= {
        "zero.pdf",
        "script.html",
        "rows.jsonl:2",
    }
    r = invoke(["index", str(odd_inputs)], env=env)
    assert r.exit_code == 0, r.stderr
    assert "skipped 4" in r.stderr and "zero.pdf" in r.stderr and "empty file" in r.stderr


def test_format_registry_drives_everything():
    """A format is one module plus one registry entry: suffixes, types and filters all derive from it."""
    from kret.indexer.loaders import FORMATS, SUPPORTED_SUFFIXES, canonical_source_type, source_types

    assert {s for f in FORMATS for s in f.suffixes} == SUPPORTED_SUFFIXES
    assert source_types() == [f.source_type for f in FORMATS]
    for f in FORMATS:
        assert (f.extract is None) != (f.load_rows is None), f.source_type
        for suffix in f.suffixes:
            assert canonical_source_type(suffix.upper()) == f.source_type
            assert canonical_source_type(suffix[1:]) == f.source_type
    assert canonical_source_type("exe") is None


def test_bytes_a_bom_cannot_decode_are_reported(tmp_path):
    from kret.indexer.loaders import skipped_entries

    data = b"\xef\xbb\xbf" + "첫 문단\n".encode() + b"\xff\xfe" + "끝 \ufffd".encode()  # one real U+FFFD
    path = _write(tmp_path / "bom.txt", data)
    docs, problems = load_file_report(path, tmp_path)
    assert len(docs) == 1 and "첫 문단" in docs[0].text
    assert skipped_entries(str(path), docs, problems) == [
        {"path": str(path), "reason": "undecodable bytes: 2 invalid utf-8 sequence(s) replaced by U+FFFD"}
    ]
