"""Reading inputs: every kind of bad input is refused with a clear reason, and good input is kept."""

from __future__ import annotations

import io
import json

import pytest

from memkit.errors import InputError
from memkit.sources import SourceDocument, iter_sources


def split(items):
    docs = [i for i in items if isinstance(i, SourceDocument)]
    errors = [i for i in items if isinstance(i, InputError)]
    return docs, errors


def test_text_file_is_one_document(tmp_path):
    (tmp_path / "a.md").write_text("# Title\n\nSome text.\n")
    docs, errors = split(list(iter_sources([str(tmp_path / "a.md")])))
    assert not errors and len(docs) == 1
    assert docs[0].text.startswith("# Title") and docs[0].source.endswith("a.md")


def test_directory_is_walked_recursively_and_skips_other_files(tmp_path):
    (tmp_path / "sub" / "deep").mkdir(parents=True)
    (tmp_path / "one.txt").write_text("first document")
    (tmp_path / "sub" / "two.md").write_text("second document")
    (tmp_path / "sub" / "deep" / "three.markdown").write_text("third document")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\x00\x00")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "secret.txt").write_text("hidden")
    docs, errors = split(list(iter_sources([str(tmp_path)])))
    assert not errors
    assert sorted(d.text for d in docs) == ["first document", "second document", "third document"]


def test_empty_file_is_refused(tmp_path):
    (tmp_path / "empty.txt").write_text("  \n\t")
    docs, errors = split(list(iter_sources([str(tmp_path / "empty.txt")])))
    assert not docs and len(errors) == 1 and "empty" in str(errors[0])


def test_binary_file_is_refused(tmp_path):
    (tmp_path / "blob.txt").write_bytes(b"abc\x00\x01\x02def")
    docs, errors = split(list(iter_sources([str(tmp_path / "blob.txt")])))
    assert not docs and "binary" in str(errors[0])


def test_invalid_utf8_names_the_offset(tmp_path):
    (tmp_path / "latin.txt").write_bytes("caf\u00e9 au lait".encode("latin-1"))
    docs, errors = split(list(iter_sources([str(tmp_path / "latin.txt")])))
    assert not docs and "UTF-8" in str(errors[0]) and "offset 3" in str(errors[0])


def test_nonexistent_path(tmp_path):
    docs, errors = split(list(iter_sources([str(tmp_path / "nope.txt")])))
    assert not docs and "no such file" in str(errors[0])


def test_jsonl_malformed_line_reports_line_and_keeps_the_others(tmp_path):
    lines = [json.dumps({"text": "good one", "id": 7, "timestamp": "2024-01-02"}),
             "{not json",
             json.dumps({"id": "x"}),
             json.dumps(["a list"]),
             "",
             json.dumps({"text": "good two", "source": "wire", "topic": "ships"})]
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(lines) + "\n")
    docs, errors = split(list(iter_sources([str(path)])))
    assert [d.text for d in docs] == ["good one", "good two"]
    assert [e.line for e in errors] == [2, 3, 4]
    assert "not valid JSON" in str(errors[0]) and f"{path}:2" in str(errors[0])
    assert "no 'text'" in str(errors[1])
    first, second = docs
    assert first.external_id == "7" and first.timestamp == "2024-01-02" and first.stream == "s"
    assert second.source == "wire" and second.meta == {"topic": "ships"}
    assert (first.position, second.position) == (0, 1)


def test_stdin_text_and_jsonl():
    docs, errors = split(list(iter_sources(["-"], stdin=io.BytesIO(b"from stdin"))))
    assert docs[0].text == "from stdin" and docs[0].source == "<stdin>"
    data = b'{"text": "a"}\n{"text": "b"}\n'
    docs, errors = split(list(iter_sources(["-"], fmt="jsonl", stdin=io.BytesIO(data))))
    assert [d.text for d in docs] == ["a", "b"] and not errors


def test_unknown_format_is_a_clear_error():
    with pytest.raises(InputError, match="--format"):
        list(iter_sources(["x"], fmt="csv"))


def test_content_hash_depends_on_text_only():
    a = SourceDocument(text="same", source="a")
    b = SourceDocument(text="same", source="b")
    c = SourceDocument(text="other", source="a")
    assert a.content_hash == b.content_hash != c.content_hash
