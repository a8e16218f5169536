"""Reading inputs: every kind of bad input is refused with a clear reason, and good input is kept."""

from __future__ import annotations

import io
import json

import pytest

from memkit.errors import InputError
from memkit.documents import MAX_NAME_CHARS, ReadLimits, SourceDocument, validate_document
from memkit.sources import iter_sources


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
    assert first.external_id == "7" and first.timestamp == "2024-01-02T00:00:00+00:00" and first.stream == "s"
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


# ---- every line is validated on its own ------------------------------------------------------------------------
BAD_LINES = [   # (line, what the refusal says)
    ('{"text": "huge timestamp", "timestamp": 1e20}', "'timestamp' 1e+20 is out of range"),
    ('{"text": "negative timestamp", "timestamp": -1e15}', "'timestamp' -1000000000000000.0 is out of range"),
    ('{"text": "not a number", "timestamp": NaN}', "NaN is not a JSON number"),
    ('{"text": "infinite", "score": 1e400}', "the number 1e400 is out of range"),
    ('{"text": "empty source", "source": ""}', "'source' is empty"),
    ('{"text": "long integer", "n": ' + "7" * 5000 + "}", "a number of more than 4300 digits"),
    ('{"text": "deep", "nest": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    ('{"text": "lone \\ud800 surrogate"}', "lone surrogate (\\ud800"),
    ('{"text": "bad date", "timestamp": "not a date"}', "'timestamp' 'not a date' is not a date; use ISO 8601"),
    ('{"text": "nul \\u0000 inside"}', "NUL character"),
    ('{"text": "meta too deep", "nest": ' + "[" * 40 + "]" * 40 + "}", "field 'nest' is nested too deeply"),
    ('{"text": "float id", "id": 1.5}', "'id' must be a string or an integer"),
    ('{"text": "long id", "id": "' + "x" * (MAX_NAME_CHARS + 1) + '"}', "'id' is longer than 200 characters"),
    ('{"text": "ctrl", "a": 1}\x01', "not valid JSON: Extra data (column 25)"),
]


def test_jsonl_every_bad_line_is_reported_and_every_good_line_kept(tmp_path):
    good = [json.dumps({"text": f"good line {i}", "id": i}) for i in range(3)]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join([good[0]] + [line for line, _ in BAD_LINES] + good[1:]) + "\n")
    docs, errors = split(list(iter_sources([str(path)])))
    assert [d.text for d in docs] == ["good line 0", "good line 1", "good line 2"]
    assert [d.position for d in docs] == [0, 1, 2]
    assert [e.line for e in errors] == list(range(2, 2 + len(BAD_LINES)))
    for error, (_, reason) in zip(errors, BAD_LINES):
        assert str(error).startswith(f"{path}:{error.line}: ")
        assert reason in str(error), (reason, str(error))


def test_json_error_names_the_column_once(tmp_path):
    path = tmp_path / "ctl.jsonl"
    path.write_bytes(b'{"text": "a\x01b"}\n')
    docs, errors = split(list(iter_sources([str(path)])))
    assert not docs
    assert str(errors[0]) == f"{path}:1: not valid JSON: Invalid control character (column 12)"


@pytest.mark.parametrize("given,stored", [
    ("2024-01-02", "2024-01-02T00:00:00+00:00"),
    ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05+00:00"),
    (" 2024-01-02T03:04:05+02:00 ", "2024-01-02T01:04:05+00:00"),
    (0, "1970-01-01T00:00:00+00:00"),
    (86400.5, "1970-01-02T00:00:00.500000+00:00"),
    (-62135596800, "0001-01-01T00:00:00+00:00"),
])
def test_timestamps_are_normalised_to_iso_utc(tmp_path, given, stored):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"text": "dated", "timestamp": given}) + "\n")
    docs, errors = split(list(iter_sources([str(path)])))
    assert not errors and docs[0].timestamp == stored


def test_nul_after_the_first_block_of_a_text_file_is_refused(tmp_path):
    (tmp_path / "late.txt").write_bytes(b"a" * 10_000 + b"\x00tail")
    docs, errors = split(list(iter_sources([str(tmp_path / "late.txt")])))
    assert not docs and "NUL character (at character 10000)" in str(errors[0])


def test_utf8_bom_on_the_first_jsonl_line_is_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"text": "first"}).encode() + b"\n")
    docs, errors = split(list(iter_sources([str(path)])))
    assert not errors and docs[0].text == "first"


@pytest.mark.parametrize("change,reason", [
    ({"text": "lone \ud800"}, "the text contains a lone surrogate"),
    ({"text": "a\x00b"}, "NUL character (at character 1)"),
    ({"text": " \n"}, "the text is empty"),
    ({"text": b"bytes"}, "the text must be a string, not bytes"),
    ({"source": ""}, "'source' is empty"),
    ({"source": None}, "'source' must be a string, not NoneType"),
    ({"source": "two\nlines"}, "'source' contains a control character"),
    ({"external_id": "x" * 201}, "'id' is longer than 200 characters"),
    ({"stream": "s" * 201}, "the stream name (--stream) is longer than 200 characters"),
    ({"timestamp": "t" * 65}, "'timestamp' is longer than 64 characters"),
    ({"position": -1}, "position must be a whole number"),
    ({"meta": {"x": object()}}, "field 'x' holds a value of type object, which is not JSON"),
    ({"meta": {"x": float("nan")}}, "field 'x' holds nan"),
    ({"meta": {"x": "\udcff"}}, "field 'x' contains a lone surrogate"),
    ({"meta": {1: "a"}}, "meta has a key that is not a string"),
])
def test_validate_document_refuses_what_cannot_be_stored(change, reason):
    fields = {"text": "fine text", "source": "here"} | change
    with pytest.raises(InputError) as caught:
        validate_document(SourceDocument(**fields))
    assert reason in str(caught.value)


def test_validate_document_names_the_given_place_and_keeps_good_documents():
    with pytest.raises(InputError, match=r"^f\.jsonl:4: the text is empty"):
        validate_document(SourceDocument(text="", source="elsewhere"), source="f.jsonl", line=4)
    with pytest.raises(InputError, match=r"^not a SourceDocument but a str"):
        validate_document("just text")
    doc = SourceDocument(text="ok", source="s", meta={"a": [1, {"b": None}]})
    assert validate_document(doc) is doc
    with pytest.raises(InputError, match=r"--max-doc-bytes"):
        validate_document(SourceDocument(text="\u00e9" * 60, source="s"), ReadLimits(max_doc_bytes=100))
