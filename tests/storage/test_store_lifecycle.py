"""Creating and opening stores: persistence across instances, refusals, model checks and error messages."""

from __future__ import annotations

import json

import numpy as np
import pytest

from storage import (
    CollectionNotFoundError,
    DocumentIn,
    DocumentNotFoundError,
    MemoryNotFoundError,
    ModelMismatchError,
    NotAStoreError,
    RecordIn,
    Store,
    StoreError,
    StoreExistsError,
)
from storage import errors as store_errors
from storehelpers import doc, files_under, keyed, sqlite_only, unit_rows


def test_create_then_open_in_a_new_instance_sees_everything(make_store, tmp_path, rng, db):
    store = make_store(key_dim=None)
    keys = unit_rows(rng, 3)
    ids = [store.add_document(doc(i, stream="s1", position=i, meta={"n": i}), [keyed(k)]).document_id
           for i, k in enumerate(keys)]
    info = store.info
    store.close()

    marker = json.loads((tmp_path / "store" / "store.json").read_text())
    assert files_under(tmp_path / "store") >= {"store.json", "index/1.faiss", "index/1.json"}
    if db == "sqlite":
        assert "memkit.db" in files_under(tmp_path / "store") and marker == {"format": 1, "db_url": None}
    else:  # the URL as given (docs/postgres.md: keep the password out of it, in PGPASSWORD or ~/.pgpass)
        assert "memkit.db" not in files_under(tmp_path / "store")
        assert marker["format"] == 1 and marker["db_url"].startswith("postgresql+psycopg://memkit:")
    with Store.open(tmp_path / "store") as again:
        assert not again.writable
        assert again.info == info
        assert again.info.method_config == {"chunk_tokens": 64, "top_k": 4}
        assert again.info.key_dim == keys.shape[1]
        rows = again.list_documents()
        assert [r.id for r in rows] == ids
        assert [(r.stream, r.position, r.meta) for r in rows] == [("s1", i, {"n": i}) for i in range(3)]
        assert again.get_document(ids[1]).text == doc(1).text
        assert again.search(keys[2], 1)[0].document_id == ids[2]


def test_open_of_a_directory_that_is_not_a_store(tmp_path):
    (tmp_path / "plain").mkdir()
    for path in (tmp_path / "plain", tmp_path / "missing"):
        with pytest.raises(NotAStoreError, match="memkit init"):
            Store.open(path)
        with pytest.raises(NotAStoreError):
            Store.open(path, write=True)
    assert not (tmp_path / "missing").exists()


@sqlite_only  # on PostgreSQL: test_store_postgres.py drops the database
def test_store_whose_database_is_gone_is_not_silently_recreated(make_store, tmp_path):
    make_store().close()
    (tmp_path / "store" / "memkit.db").unlink()
    with pytest.raises(StoreError, match="does not exist; restore it"):
        Store.open(tmp_path / "store")
    assert not (tmp_path / "store" / "memkit.db").exists()


def test_create_twice_is_refused_and_leaves_the_first_store_intact(make_store, tmp_path, rng):
    first = make_store()
    first.add_document(doc(0), [keyed(unit_rows(rng, 1)[0])])
    first.close()
    with pytest.raises(StoreExistsError):
        make_store()
    with Store.open(tmp_path / "store") as s:
        assert s.count_documents() == 1


def test_create_refuses_a_non_empty_directory_and_a_file(make_store, tmp_path):
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "notes.txt").write_text("mine")
    with pytest.raises(NotAStoreError, match="not empty"):
        make_store("store")
    assert files_under(tmp_path / "store") == {"notes.txt"}
    (tmp_path / "afile").write_text("x")
    with pytest.raises(NotAStoreError, match="not a directory"):
        make_store("afile")


def test_create_in_an_existing_empty_directory(make_store, tmp_path):
    (tmp_path / "empty").mkdir()
    store = make_store("empty")
    assert store.writable and store.info.name == "default"


def test_failed_create_removes_what_it_made(make_store, tmp_path, new_db_url):
    url = new_db_url() or f"sqlite:///{tmp_path / 'shared.db'}"
    make_store("a", db_url=url).close()
    with pytest.raises(StoreExistsError, match="collection 'default'"):
        make_store("b", db_url=url)
    assert not (tmp_path / "b").exists()


def test_external_database_url_is_recorded_and_used(make_store, tmp_path, rng, new_db_url):
    db = tmp_path / "elsewhere.db"
    url = new_db_url() or f"sqlite:///{db}"
    store = make_store("ext", db_url=url)
    store.add_document(doc(0), [keyed(unit_rows(rng, 1)[0])])
    store.close()
    assert db.exists() == url.startswith("sqlite") and not (tmp_path / "ext" / "memkit.db").exists()
    assert json.loads((tmp_path / "ext" / "store.json").read_text())["db_url"] == url
    with Store.open(tmp_path / "ext") as s:
        assert s.count_documents() == 1


def test_model_mismatch_names_both_models(make_store):
    store = make_store(model_id="org/small", model_fingerprint="fp-small")
    store.check_model("org/small", "fp-small")
    with pytest.raises(ModelMismatchError) as err:
        store.check_model("org/large", "fp-large")
    message = str(err.value)
    assert "org/small" in message and "org/large" in message and "memkit init --store" in message


def test_unknown_collection_lists_the_ones_there(make_store, tmp_path):
    make_store().close()
    with pytest.raises(CollectionNotFoundError, match="'default'"):
        Store.open(tmp_path / "store", collection="other")


def test_reader_cannot_write_and_closed_store_cannot_write(make_store, tmp_path):
    make_store().close()
    with Store.open(tmp_path / "store") as reader:
        with pytest.raises(StoreError, match="read-only"):
            reader.add_document(doc(0), [])
    writer = Store.open(tmp_path / "store", write=True)
    writer.close()
    writer.close()  # twice is fine
    with pytest.raises(StoreError):
        writer.add_document(doc(0), [])


def test_every_store_error_is_one_line_with_its_exit_code(tmp_path):
    damage = [
        store_errors.NotAStoreError(tmp_path),
        store_errors.StoreExistsError(tmp_path),
        store_errors.StoreLockedError(tmp_path, 4321),
        store_errors.ModelMismatchError(tmp_path, "a", "b"),
        store_errors.CorruptBlobError(7, 9, tmp_path / "blobs" / "x"),
        store_errors.MemoryNotFoundError(5),
        store_errors.CollectionNotFoundError(tmp_path, "x", ["default"]),
        store_errors.DimensionMismatchError(8, 4),
        store_errors.StoreFormatError("newer store"),
        store_errors.CorruptDatabaseError(tmp_path / "memkit.db", "is damaged (malformed)"),
        store_errors.DatabaseUnavailableError(tmp_path / "memkit.db", "does not exist"),
    ]
    mistakes = [  # the user's input, not the store, is wrong: exit 2 like any bad option
        store_errors.DocumentNotFoundError(5),
        store_errors.DocumentNotFoundError(5, 6, note="; nothing was removed"),
        store_errors.DatabaseURLError("bogus://x", "unknown scheme"),
    ]
    for e in damage + mistakes:
        assert isinstance(e, StoreError) and e.exit_code == (2 if e in mistakes else 3)
        assert "\n" not in str(e) and str(e)
    assert "pid 4321" in str(damage[2]) and "wait for it to finish" in str(damage[2])
    assert "memory 9 of document 7" in str(damage[4]) and "memkit doctor" in str(damage[4])
    assert "ids 5, 6 in this store; nothing was removed; `memkit ls`" in str(mistakes[1])


def test_content_hash_is_sha256_of_utf8_text():
    import hashlib

    d = DocumentIn(text="héllo wörld", source="x")
    assert d.content_hash == hashlib.sha256("héllo wörld".encode("utf-8")).hexdigest()
    r = RecordIn(kind="chunk", key=np.zeros(3, np.float32))
    assert r.tensors == {} and r.meta == {} and r.span is None


@sqlite_only  # the file and its journal mode
def test_a_reader_leaves_the_database_file_exactly_as_it_was(make_store, tmp_path):
    """A store on a database in rollback-journal mode (another tool may have set it): a reader does not switch
    it to WAL, nor write anything else; only a writer may."""
    import sqlite3

    make_store().close()
    db = tmp_path / "store" / "memkit.db"
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode = DELETE").fetchone()[0] == "delete"
    con.close()
    before = db.read_bytes()
    with Store.open(tmp_path / "store") as reader:
        reader.list_documents(), reader.stats(), reader.verify()
    assert db.read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "store").iterdir() if p.name.startswith("memkit.db")) == ["memkit.db"]
    with Store.open(tmp_path / "store", write=True):
        pass
    assert db.read_bytes()[18:20] == b"\x02\x02"  # the writer put it back in WAL mode


def test_an_in_memory_database_url_is_refused(tmp_path):
    from storage import StoreError

    with pytest.raises(StoreError, match="in memory") as err:
        Store.create(tmp_path / "s", model_id="m", model_revision=None, model_fingerprint="f", method="rag",
                     method_config={}, key_dim=None, db_url="sqlite://")
    assert err.value.exit_code == 2 and not (tmp_path / "s").exists()
    with pytest.raises(StoreError, match="driver") as err:  # no such driver here; the password is never shown
        Store.create(tmp_path / "s", model_id="m", model_revision=None, model_fingerprint="f", method="rag",
                     method_config={}, key_dim=None, db_url="postgresql+nosuchdriver://u:secret@h/db")
    assert "secret" not in str(err.value) and "u:***@h/db" in str(err.value) and err.value.exit_code == 2


def test_removing_many_ids_checks_them_in_one_read(filled):
    from sqlalchemy import event

    from storage import DocumentNotFoundError

    store, _ = filled
    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731 (conn, cursor, statement, ...)
    event.listen(store._engine, "before_cursor_execute", listener)
    try:
        with pytest.raises(DocumentNotFoundError, match="nothing was removed"):
            store.remove_documents([*range(1, 50), 10_000])
    finally:
        event.remove(store._engine, "before_cursor_execute", listener)
    assert len(statements) <= 3 and store.count_documents() == 60


@pytest.mark.parametrize("big", [2**31, 2**40])
def test_ids_past_32_bits_are_simply_not_there(make_store, rng, big):
    store = make_store()
    store.add_document(doc(0), [keyed(unit_rows(rng, 1)[0], tensors={"x": np.ones(2, np.float32)})])
    assert store.get_documents([1, big]).keys() == {1}
    with pytest.raises(DocumentNotFoundError, match=f"id {big}"):
        store.get_document(big)
    with pytest.raises(DocumentNotFoundError, match=f"id {big}"):
        store.remove_document(big)
    with pytest.raises(MemoryNotFoundError, match=f"id {big}"):
        store.get_memory(big)
    with pytest.raises(MemoryNotFoundError, match=f"id {big}"):
        store.load_payloads([1, big])
    assert store.count_documents() == 1
