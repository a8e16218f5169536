"""A damaged or foreign store: one clear line and exit 3 from every command, reads that create nothing, doctor
that tells damage from work in progress, and repair of what is derived."""

from __future__ import annotations

import json
import random
import sqlite3

import pytest

from storage import Store
from pgserver import on_both_databases

COMMANDS = [("ls",), ("show", "1"), ("rm", "1"), ("stats",), ("reindex",), ("doctor", "--skip-model"),
            ("ask", "Who keeps the lighthouse?"), ("ingest", "{doc}"), ("export-lora", "1", "--out", "{out}")]


@pytest.fixture
def filled_store(rag_store, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(6):
        (docs / f"d{i}.txt").write_text(f"Person {i} keeps the lighthouse of harbour {i} and sails on Sundays.")
    result = rag_store("ingest", docs)
    assert result.exit_code == 0, result.output + result.stderr
    return rag_store


def _damage(path, kind: str) -> None:
    data = bytearray(path.read_bytes())
    if kind == "truncated":
        data = data[: len(data) // 3]
    elif kind == "bad_header":
        data[:16] = b"garbage garbage!"
    elif kind == "random_pages":
        rng = random.Random(0)
        for page in range(1, len(data) // 4096):
            for _ in range(200):
                data[page * 4096 + rng.randrange(4096)] = rng.randrange(256)
    elif kind == "emptied":
        data = bytearray()
    path.write_bytes(bytes(data))


def _checkpoint(store_dir) -> None:
    """Folds the WAL into the database file, so that damaging the file damages what readers see."""
    con = sqlite3.connect(store_dir / "memkit.db")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


@pytest.mark.parametrize("kind", ["truncated", "bad_header", "random_pages", "emptied"])
def test_a_damaged_database_is_one_line_and_exit_3_from_every_command(filled_store, tmp_path, kind):
    memkit = filled_store
    _checkpoint(memkit.store)
    _damage(memkit.store / "memkit.db", kind)
    damaged = (memkit.store / "memkit.db").read_bytes()
    doc = tmp_path / "new.txt"
    doc.write_text("A new document that must not be written anywhere.")
    for command in COMMANDS:
        args = [a.format(doc=doc, out=tmp_path / "lora") for a in command]
        result = memkit(*args)
        errors = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.exit_code == 3, (args, result.output, result.stderr)
        assert "Traceback" not in result.output + result.stderr, args
        assert len(errors) == 1 and errors[0].startswith("error: the store's database"), (args, result.stderr)
        assert "restore it from a backup" in errors[0], args
    assert (memkit.store / "memkit.db").read_bytes() == damaged, "nothing wrote to the damaged database"


def test_a_read_never_creates_a_database(filled_store, tmp_path):
    memkit = filled_store
    db = memkit.store / "memkit.db"
    db.unlink()
    for command in (("ls",), ("stats",), ("show", "1"), ("doctor", "--skip-model")):
        result = memkit(*command)
        assert result.exit_code == 3 and "does not exist" in result.stderr, command
    assert not db.exists()

    db.write_bytes(b"")  # emptied: never silently made a fresh, empty store
    result = memkit("ls")
    assert result.exit_code == 3 and "is empty" in result.stderr and "no collection" not in result.stderr
    assert db.read_bytes() == b""

    elsewhere = tmp_path / "elsewhere" / "other.db"
    elsewhere.parent.mkdir()
    marker = memkit.store / "store.json"
    marker.write_text(json.dumps({"format": 1, "db_url": f"sqlite:///{elsewhere}"}))
    result = memkit("ls")
    assert result.exit_code == 3 and str(elsewhere) in result.stderr
    assert not elsewhere.exists(), "a read-only ls created the database store.json names"


def test_healthy_reads_leave_the_store_files_as_they_were(filled_store):
    memkit = filled_store
    assert memkit("reindex").exit_code == 0
    before = {p.relative_to(memkit.store): p.stat().st_mtime_ns for p in memkit.store.rglob("*") if p.is_file()}
    for command in (("ls",), ("show", "1"), ("stats",), ("doctor", "--skip-model"), ("ask", "Who sails?")):
        assert memkit(*command).exit_code == 0, command
    after = {p.relative_to(memkit.store): p.stat().st_mtime_ns for p in memkit.store.rglob("*") if p.is_file()}
    assert after == before


def _index_file(memkit):
    return memkit.store / "index" / "1.faiss"


def test_an_unreadable_index_file_is_a_problem_that_repair_fixes(filled_store, caplog):
    memkit = filled_store
    asked = memkit.json("ask", "Who keeps the lighthouse of harbour 3?")
    _index_file(memkit).write_bytes(b"\x00" * 200)
    result = memkit("doctor", "--skip-model")
    assert result.exit_code == 1 and "index file" in result.stdout and "checksum" in result.stdout
    assert "--repair" in result.stdout

    caplog.clear()
    again = memkit("ask", "Who keeps the lighthouse of harbour 3?", "--json")  # answered from SQL's keys
    assert again.exit_code == 0
    assert [s["document_id"] for s in json.loads(again.stdout)["sources"]] == [s["document_id"] for s in asked["sources"]]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "checksum" in warnings[0] and "memkit reindex" in warnings[0]
    assert "\n" not in warnings[0] and "Error in" not in warnings[0]  # one line, no FAISS message

    repaired = memkit("doctor", "--skip-model", "--repair")
    assert repaired.exit_code == 0 and "rebuilt the index" in repaired.stdout and "healthy" in repaired.stdout
    assert memkit("doctor", "--skip-model").exit_code == 0


def test_altered_vectors_are_never_trusted(filled_store):
    memkit = filled_store
    question = "Who keeps the lighthouse of harbour 4?"
    asked = memkit.json("ask", question)
    path = _index_file(memkit)
    data = bytearray(path.read_bytes())
    for i in range(200, len(data) - 200, 7):  # vectors scrambled; FAISS still reads the file
        data[i] ^= 0x55
    path.write_bytes(bytes(data))
    result = memkit("ask", question, "--json")
    assert result.exit_code == 0
    assert [s["document_id"] for s in json.loads(result.stdout)["sources"]] == \
        [s["document_id"] for s in asked["sources"]]
    assert memkit("doctor", "--skip-model").exit_code == 1


def test_a_stale_index_after_a_crash_is_a_note_not_a_problem(filled_store):
    memkit = filled_store
    sidecar = _index_file(memkit).with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps(dict(meta, generation=meta["generation"] - 1)))  # as a kill -9 leaves it
    result = memkit("doctor", "--skip-model")
    assert result.exit_code == 0, result.stdout
    assert "note:" in result.stdout and "generation" in result.stdout and "healthy" in result.stdout


@on_both_databases
def test_doctor_knows_a_live_writer_from_a_problem(filled_store):
    memkit = filled_store
    sidecar = _index_file(memkit).with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    with Store.open(memkit.store, write=True):
        sidecar.write_text(json.dumps(dict(meta, generation=meta["generation"] - 1)))
        fresh = memkit.store / "blobs" / "ab" / ("ab" + "0" * 30 + ".safetensors")
        fresh.parent.mkdir(exist_ok=True)
        fresh.write_bytes(b"a blob the writer has not committed yet")
        result = memkit("doctor", "--skip-model")
        assert result.exit_code == 0, result.stdout
        assert "is writing the store" in result.stdout and "problem:" not in result.stdout
        repair = memkit("doctor", "--skip-model", "--repair")
        assert repair.exit_code == 3 and "another memkit process" in repair.stderr
    result = memkit("doctor", "--skip-model")  # the writer is gone (killed): the blob is a crash's leftover
    assert result.exit_code == 1 and "orphan blob" in result.stdout and "--repair" in result.stdout
    result = memkit("reindex", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["removed"] == [fresh.relative_to(memkit.store).as_posix()]
    assert not fresh.exists() and memkit("doctor", "--skip-model").exit_code == 0


def _set_blob_path(store_dir, doc_id: int, value: str) -> None:
    con = sqlite3.connect(store_dir / "memkit.db")
    con.execute("UPDATE memories SET blob_path = ?, checksum = 'x' WHERE document_id = ?", (value, doc_id))
    con.commit()
    con.close()


@pytest.fixture
def slots_like_store(rag_store, tmp_path):
    """A rag store whose first two documents carry payload blobs (as adapter and slot memories do)."""
    import numpy as np

    from storage import DocumentIn, RecordIn

    with Store.open(rag_store.store, write=True) as store:
        dim = store.info.key_dim
        for i in range(2):
            key = np.zeros(dim, dtype=np.float32)
            key[i] = 1.0
            store.add_document(DocumentIn(text=f"payload document {i}", source=f"p{i}"),
                               [RecordIn(kind="test", key=key, tensors={"x": np.arange(8, dtype=np.float32)})])
    return rag_store


@pytest.mark.timeout(60)
def test_blob_paths_from_the_database_stay_inside_the_store(slots_like_store, tmp_path):
    memkit = slots_like_store
    victim = tmp_path / "victim.txt"
    victim.write_text("not the store's to delete")
    _set_blob_path(memkit.store, 1, "../victim.txt")
    _set_blob_path(memkit.store, 2, "/dev/zero")
    result = memkit("doctor", "--skip-model")  # /dev/zero would never end if it were read
    assert result.exit_code == 1
    assert "document 1" in result.stdout and "document 2" in result.stdout and "memkit never writes" in result.stdout
    result = memkit("rm", "1")
    assert result.exit_code == 0 and victim.read_text() == "not the store's to delete"


def test_store_files_are_never_group_or_world_writable(memkit, model_dir, tmp_path):
    import os
    import stat

    old = os.umask(0)
    try:
        assert memkit("init", "--model", model_dir, "--method", "rag", "-o", "chunk_tokens=32").exit_code == 0
        (tmp_path / "a.txt").write_text("Ada keeps the lighthouse.")
        assert memkit("ingest", tmp_path / "a.txt").exit_code == 0
        with Store.open(memkit.store, write=True) as store:
            import numpy as np

            store.save_state("finetune", {"w": np.ones(3, dtype=np.float32)})
            store.reindex()
    finally:
        os.umask(old)
    paths = [memkit.store, *memkit.store.rglob("*")]
    assert any(p.suffix == ".faiss" for p in paths) and any("state" in p.parts for p in paths)
    loose = [str(p) for p in paths if p.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH)]
    assert loose == []


@on_both_databases
def test_ids_and_offsets_too_large_for_any_database(filled_store):
    memkit = filled_store
    huge = "99999999999999999999"
    for command in (("show", huge), ("rm", huge)):
        result = memkit(*command)
        assert result.exit_code == 2 and f"no document with id {huge}" in result.stderr, command
        assert "Traceback" not in result.output + result.stderr
    result = memkit("ls", "--offset", huge)
    assert result.exit_code == 0 and "no documents" in result.stdout


@on_both_databases
def test_rm_checks_every_id_before_removing_any(filled_store):
    memkit = filled_store
    result = memkit("rm", "2", "424242")
    assert result.exit_code == 2
    assert "424242" in result.stderr and "nothing was removed" in result.stderr and "memkit ls" in result.stderr
    assert 2 in [d["id"] for d in memkit.json("ls")]


@pytest.mark.parametrize("url, reason", [("bogus://x", "Can't load plugin"),
                                         ("sqlite:////nonexistent/dir/x.db", "/nonexistent/dir does not exist")])
def test_init_with_a_bad_database_url_is_one_line(memkit, model_dir, url, reason):
    result = memkit("init", "--model", model_dir, "--db-url", url)
    assert result.exit_code == 2 and "--db-url" in result.stderr and reason in result.stderr
    assert "Traceback" not in result.output + result.stderr and not memkit.store.exists()


def test_commands_that_do_not_search_never_read_the_index(filled_store, monkeypatch):
    from storage.index import VectorIndex
    from storage.keeper import IndexKeeper

    memkit = filled_store
    question = "Who keeps the lighthouse of harbour 2?"

    def refuse(*args, **kwargs):
        raise AssertionError("the vector index was read")

    with monkeypatch.context() as m:
        m.setattr(VectorIndex, "load", refuse)
        m.setattr(IndexKeeper, "rebuild", refuse)
        for command in (("ls",), ("show", "3"), ("stats",), ("rm", "3")):
            result = memkit(*command)
            assert result.exit_code == 0, (command, result.output, result.stderr)
        assert memkit.json("stats")["index_vectors"] == memkit.json("stats")["memories"]
    after = memkit.json("ask", question)["sources"]  # the file less the removed ids, as the sidecar lists them
    assert after and all(s["document_id"] != 3 for s in after)
    assert memkit("doctor", "--skip-model").exit_code == 0
    assert memkit("reindex").exit_code == 0
    rebuilt = memkit.json("ask", question)["sources"]
    assert [(s["document_id"], round(s["score"], 5)) for s in after] == \
        [(s["document_id"], round(s["score"], 5)) for s in rebuilt]


@on_both_databases
def test_arguments_that_are_not_utf8_are_one_line_not_a_traceback(filled_store):
    """A byte of the command line that is not UTF-8 reaches Python as a lone surrogate."""
    memkit = filled_store
    result = memkit("ls", "--stream", "\udcff")
    assert result.exit_code == 0 and "no documents" in result.stdout
    result = memkit("ask", "who \udcff")
    assert result.exit_code == 2 and "the question contains a lone surrogate" in result.stderr
    assert "Traceback" not in result.output + result.stderr
