"""Bad input gets one clear line and a non-zero exit code, and loses nothing that was good."""

from __future__ import annotations

import json
import shutil

import numpy as np

from storage import Store
from storage.types import DocumentIn, RecordIn
from pgserver import on_both_databases


def texts(memkit):
    return sorted(d["source"] for d in memkit.json("ls"))


def test_empty_binary_and_bad_utf8_files_are_refused_and_the_rest_kept(rag_store, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "good.txt").write_text("A perfectly good document about the harbour.")
    (d / "empty.txt").write_text("")
    (d / "binary.txt").write_bytes(b"\x00\x01\x02\x03")
    (d / "latin.txt").write_bytes("caf\u00e9".encode("latin-1"))
    result = rag_store("ingest", d)
    assert result.exit_code == 1
    assert "Traceback" not in result.output + result.stderr
    assert "empty" in result.stderr and "binary" in result.stderr and "UTF-8" in result.stderr
    assert [s.rsplit("/", 1)[-1] for s in texts(rag_store)] == ["good.txt"]


def test_malformed_jsonl_reports_line_and_keeps_good_lines(rag_store, tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps({"text": "first good line"}) + "\n{oops\n" + json.dumps({"id": 3}) + "\n"
                    + json.dumps({"text": "last good line"}) + "\n")
    result = rag_store("ingest", path)
    assert result.exit_code == 1
    assert f"{path}:2" in result.stderr and "not valid JSON" in result.stderr
    assert f"{path}:3" in result.stderr and "'text'" in result.stderr
    docs = rag_store.json("ls")
    assert len(docs) == 2
    assert [rag_store.json("show", d["id"])["text"] for d in docs] == ["first good line", "last good line"]


BAD_LINES = [   # (line, what its refusal says): each of these once aborted the whole ingest with a traceback
    ('{"text": "huge timestamp", "timestamp": 1e20}', "'timestamp' 1e+20 is out of range"),
    ('{"text": "negative timestamp", "timestamp": -1e15}', "'timestamp' -1000000000000000.0 is out of range"),
    ('{"text": "not a number", "timestamp": NaN}', "NaN is not a JSON number"),
    ('{"text": "empty source", "source": ""}', "'source' is empty"),
    ('{"text": "long integer", "n": ' + "7" * 5000 + "}", "a number of more than 4300 digits"),
    ('{"text": "deep", "nest": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    ('{"text": "lone \\ud800 surrogate"}', "lone surrogate (\\ud800"),
    ('{"text": "bad date", "timestamp": "not a date"}', "is not a date; use ISO 8601"),
    ('{"text": "nul \\u0000 inside"}', "NUL character"),
]


def test_every_bad_jsonl_line_is_reported_and_every_good_line_kept(rag_store, tmp_path):
    good = [json.dumps({"text": f"good line number {i}", "timestamp": "2024-05-01T12:00:00Z"}) for i in range(4)]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(good[:2] + [line for line, _ in BAD_LINES] + good[2:]) + "\n")
    result = rag_store("ingest", path)
    assert result.exit_code == 1
    assert "Traceback" not in result.output + result.stderr
    assert "ingested 4 document(s)" in result.stdout and f"{len(BAD_LINES)} input(s) refused" in result.stdout
    refused = [line for line in result.stderr.splitlines() if line.startswith("refused: ")]
    assert len(refused) == len(BAD_LINES)
    for number, (line, (_, reason)) in enumerate(zip(refused, BAD_LINES), start=3):
        assert line.startswith(f"refused: {path}:{number}: ") and reason in line, (reason, line)
    docs = rag_store.json("ls")
    assert [rag_store.json("show", d["id"])["text"] for d in docs] == [f"good line number {i}" for i in range(4)]
    assert {d["timestamp"] for d in docs} == {"2024-05-01T12:00:00+00:00"}


def test_json_error_names_its_column_once(rag_store, tmp_path):
    path = tmp_path / "ctl.jsonl"
    path.write_bytes(b'{"text": "a\x01b"}\n')
    result = rag_store("ingest", path)
    assert result.exit_code == 1
    assert f"{path}:1: not valid JSON: Invalid control character (column 12)" in result.stderr
    assert "at at" not in result.stderr


def test_nonexistent_path(rag_store, tmp_path):
    result = rag_store("ingest", tmp_path / "missing.txt")
    assert result.exit_code == 1 and "no such file" in result.stderr


def test_long_document_is_chunked_not_truncated(rag_store, tmp_path):
    words = [f"word{i}" for i in range(1500)]          # far beyond the 256-token window
    (tmp_path / "long.txt").write_text(" ".join(words))
    assert rag_store("ingest", tmp_path / "long.txt").exit_code == 0
    doc = rag_store.json("show", rag_store.json("ls")[0]["id"])
    spans = sorted(tuple(m["span"]) for m in doc["memory_records"])
    assert len(spans) > 10
    assert spans[0][0] == 0 and spans[-1][1] == len(doc["text"])
    covered = set()
    for a, b in spans:
        covered.update(range(a, b))
    assert all(i in covered for i, ch in enumerate(doc["text"]) if not ch.isspace())


@on_both_databases
def test_same_document_twice_is_skipped(rag_store, tmp_path):
    (tmp_path / "a.txt").write_text("Same text.")
    (tmp_path / "b.txt").write_text("Same text.")
    report = rag_store.json("ingest", tmp_path / "a.txt", tmp_path / "b.txt")
    assert report["added"] == 1 and report["duplicates"] == 1
    assert rag_store.json("ingest", tmp_path / "a.txt")["duplicates"] == 1
    assert len(rag_store.json("ls")) == 1


def test_store_built_with_another_model_is_refused(rag_store, model_dir, other_model_dir, tmp_path):
    (tmp_path / "a.txt").write_text("Some text.")
    assert rag_store("ingest", tmp_path / "a.txt").exit_code == 0
    result = rag_store("ask", "anything?", "--model", other_model_dir)
    assert result.exit_code == 3 and "model" in result.stderr and "Traceback" not in result.stderr
    result = rag_store("init", "--model", other_model_dir)
    assert result.exit_code == 3 and "store already exists" in result.stderr


def test_model_changed_on_disk_is_refused(memkit, model_dir, other_model_dir, tmp_path):
    moved = tmp_path / "model"
    shutil.copytree(model_dir, moved)
    assert memkit("init", "--model", moved, "--method", "rag", "-o", "chunk_tokens=32").exit_code == 0
    shutil.rmtree(moved)
    shutil.copytree(other_model_dir, moved)
    result = memkit("ask", "anything?")
    assert result.exit_code == 3 and "model" in result.stderr


def test_directory_that_is_not_a_store(memkit, tmp_path):
    memkit.store = tmp_path / "somewhere"
    memkit.store.mkdir()
    for args in (["ls"], ["ask", "q?"], ["ingest", str(tmp_path)], ["stats"]):
        result = memkit(*args)
        assert result.exit_code == 3, args
        assert "memkit init" in result.stderr and "Traceback" not in result.stderr


@on_both_databases
def test_second_concurrent_writer_is_refused(rag_store, tmp_path):
    (tmp_path / "a.txt").write_text("Some text.")
    with Store.open(rag_store.store, write=True):
        result = rag_store("ingest", tmp_path / "a.txt")
        assert result.exit_code == 3 and "another memkit process" in result.stderr
        assert rag_store("ls").exit_code == 0, "readers are not blocked by the writer"
    assert rag_store("ingest", tmp_path / "a.txt").exit_code == 0


def test_corrupted_blob_is_reported_with_its_document(rag_store):
    with Store.open(rag_store.store, write=True) as store:
        dim = store.info.key_dim
        key = np.ones(dim, dtype=np.float32) / np.sqrt(dim)
        added = store.add_document(DocumentIn(text="doc with payload", source="t"),
                                   [RecordIn(kind="test", key=key, tensors={"x": np.arange(64, dtype=np.float32)})])
        blob = store.path / store.memories(added.document_id)[0].blob_path
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    result = rag_store("doctor", "--skip-model")
    assert result.exit_code == 1
    assert f"document {added.document_id}" in result.stdout and "checksum" in result.stdout


def test_bad_method_and_option_name_the_flag(memkit, model_dir):
    result = memkit("init", "--model", model_dir, "--method", "magic")
    assert result.exit_code == 2 and "--method" in result.stderr
    result = memkit("init", "--model", model_dir, "-o", "chunk_size=3")
    assert result.exit_code == 2 and "chunk_size" in result.stderr
    result = memkit("init", "--model", model_dir, "-o", "top_k=zero")
    assert result.exit_code == 2 and "top_k" in result.stderr
    assert not (memkit.store / "store.json").exists(), "a refused init leaves no store behind"


def test_missing_model_directory(memkit, tmp_path):
    result = memkit("init", "--model", tmp_path / "no-such-model")
    assert result.exit_code == 4 and "Traceback" not in result.stderr
