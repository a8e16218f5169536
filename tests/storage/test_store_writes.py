"""The write path: duplicates, all-or-nothing adds, removal, dimensions, payloads and stats."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import StatementError

from storage import DimensionMismatchError, DocumentIn, DocumentNotFoundError, MemoryNotFoundError, RecordIn, Store
from storage.blobs import BlobStore
from storage.index import VectorIndex, read_sidecar
from storehelpers import doc, files_under, keyed, store_db_url, unit_rows


def _snapshot(store: Store, probes: np.ndarray):
    """Everything a failed add must leave unchanged."""
    stats = store.stats()
    del stats["db_bytes"]  # the WAL file (a server's pages) may grow or shrink without any visible change
    return (
        store.count_documents(),
        stats,
        files_under(store.path / "blobs"),
        read_sidecar(store.path / "index" / "1.faiss"),
        [[(h.memory_id, round(h.score, 6)) for h in hits] for hits in store.search_many(probes, 5)],
    )


def _memory_rows(store: Store) -> int:
    engine = create_engine(store_db_url(store.path))
    with engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM memories")).scalar()
    engine.dispose()
    return n


def _three_records(rng) -> list[RecordIn]:
    keys = unit_rows(rng, 3)
    return [keyed(k, tensors={"w": rng.standard_normal((4, 4)).astype(np.float32)}) for k in keys]


def test_duplicate_text_is_skipped_and_writes_nothing(filled, rng):
    store, _ = filled
    probes = unit_rows(rng, 4)
    before = _snapshot(store, probes)
    result = store.add_document(DocumentIn(text=doc(7).text, source="another/place.txt"), _three_records(rng))
    assert result.duplicate and result.memory_ids == []
    assert result.document_id == store.find_by_hash(doc(7).content_hash) == 8
    assert _snapshot(store, probes) == before


@pytest.mark.parametrize("where", ["blob_write", "sql_flush"])
def test_failure_midway_leaves_no_trace(filled, rng, monkeypatch, where):
    store, _ = filled
    probes = unit_rows(rng, 4)
    before = _snapshot(store, probes)
    records = _three_records(rng)
    if where == "blob_write":
        real = BlobStore._write_file

        def write(self, rel, parts):
            real(self, rel, parts[:1])  # the first record reaches the disk, then the disk is full
            raise OSError("disk full on the second record")

        monkeypatch.setattr(BlobStore, "_write_file", write)
    else:
        records[1].meta = {"not json": object()}

    new = doc(1000)
    # Unserialisable meta: SQLAlchemy's JSON type raises StatementError; psycopg serialises JSON itself, TypeError.
    with pytest.raises((OSError, RuntimeError, StatementError, TypeError)):
        store.add_document(new, records)
    assert store.find_by_hash(new.content_hash) is None
    assert _snapshot(store, probes) == before
    assert _memory_rows(store) == 60
    assert store.verify().problems == []

    monkeypatch.undo()
    records[1].meta = {}
    result = store.add_document(new, records)
    assert not result.duplicate and len(result.memory_ids) == 3
    assert store.search(records[2].key, 1)[0].memory_id == result.memory_ids[2]


def test_an_index_failure_after_the_commit_keeps_the_document_and_the_index_catches_up(filled, rng, monkeypatch,
                                                                                      caplog):
    store, keys = filled
    real_add = VectorIndex.add

    def add(self, ids, vecs):
        real_add(self, ids, vecs)  # the vectors go in, then something fails
        raise RuntimeError("index failure after adding")

    monkeypatch.setattr(VectorIndex, "add", add)
    records = _three_records(rng)
    result = store.add_document(doc(1000), records)  # committed first: the index is only a cache of it
    assert not result.duplicate and store.find_by_hash(doc(1000).content_hash) == result.document_id
    assert "did not take the keys of 3 committed memories" in caplog.text
    monkeypatch.undo()
    assert store.search(records[2].key, 1)[0].memory_id == result.memory_ids[2]  # caught up from SQL
    assert store.search(keys[5], 1)[0].document_id == 6
    assert store.index_info()["vectors"] == 63 and store.verify().problems == []


def test_failed_first_add_does_not_fix_the_key_dimension(make_store, rng, monkeypatch):
    store = make_store(key_dim=None)
    monkeypatch.setattr(BlobStore, "write_segment",
                        lambda self, records, rel=None: (_ for _ in ()).throw(OSError("no space")))
    with pytest.raises(OSError):
        store.add_document(doc(0), [keyed(unit_rows(rng, 1, 8)[0], tensors={"a": np.ones(2, np.float32)})])
    assert store.info.key_dim is None
    monkeypatch.undo()
    store.add_document(doc(0), [keyed(unit_rows(rng, 1, 4)[0])])
    assert store.info.key_dim == 4


def test_remove_document_removes_rows_blobs_and_index_entries(filled, rng):
    store, keys = filled
    target = store.get_document(10)
    memories = store.memories(target.id)
    blob_files = {m.blob_path for m in memories}
    assert blob_files <= files_under(store.path)

    store.remove_document(target.id)
    with pytest.raises(DocumentNotFoundError):
        store.get_document(target.id)
    assert store.find_by_hash(target.content_hash) is None
    assert not blob_files & files_under(store.path)
    assert _memory_rows(store) == 59  # the cascade took the memory row
    assert store.stats()["index_vectors"] == 59
    assert all(h.document_id != target.id for h in store.search(keys[9], 60))
    assert store.verify().problems == []
    with pytest.raises(DocumentNotFoundError):
        store.remove_document(target.id)

    store.close()
    with Store.open(store.path) as reader:  # the saved index agrees
        assert reader.stats()["index_vectors"] == 59
        assert all(h.document_id != target.id for h in reader.search(keys[9], 60))


def test_ids_are_never_reused_after_removal(make_store, rng):
    store = make_store()
    first = store.add_document(doc(0), [keyed(unit_rows(rng, 1)[0])])
    store.remove_document(first.document_id)
    second = store.add_document(doc(1), [keyed(unit_rows(rng, 1)[0])])
    assert second.document_id > first.document_id and second.memory_ids[0] > first.memory_ids[0]


def test_dimension_mismatch_is_refused_before_anything_is_written(make_store, rng):
    store = make_store(key_dim=8)
    with pytest.raises(DimensionMismatchError, match="dimension 4"):
        store.add_document(doc(0), [keyed(unit_rows(rng, 1, 4)[0], tensors={"a": np.ones(3, np.float32)})])
    assert store.count_documents() == 0 and files_under(store.path / "blobs") == set()
    mixed = [keyed(unit_rows(rng, 1, 8)[0]), keyed(unit_rows(rng, 1, 6)[0])]
    with pytest.raises(DimensionMismatchError):
        store.add_document(doc(1), mixed)
    store.add_document(doc(2), [keyed(unit_rows(rng, 1, 8)[0])])
    with pytest.raises(DimensionMismatchError):
        store.search(np.ones(4, np.float32), 3)


def test_first_key_sets_the_dimension_when_none_was_given(make_store, rng):
    store = make_store(key_dim=None)
    store.add_document(doc(0), [RecordIn(kind="note", key=None, span=(0, 5))])
    assert store.info.key_dim is None and store.search(np.ones(3, np.float32), 2) == []
    store.add_document(doc(1), [keyed(unit_rows(rng, 1, 12)[0])])
    assert store.info.key_dim == 12
    with pytest.raises(DimensionMismatchError):
        store.add_document(doc(2), [keyed(unit_rows(rng, 1, 16)[0])])


def test_payload_round_trip_is_exact(make_store, rng):
    store = make_store()
    tensors = {
        "f32": rng.standard_normal((3, 5)).astype(np.float32),
        "f16": rng.standard_normal((2, 2, 7)).astype(np.float16),
        "i64": np.arange(6, dtype=np.int64).reshape(2, 3),
    }
    result = store.add_document(doc(0), [RecordIn("slots", unit_rows(rng, 1)[0], tensors, span=(0, 8), meta={"m": 1}),
                                        RecordIn("chunk", None)])
    loaded = store.load_payload(result.memory_ids[0])
    assert loaded.keys() == tensors.keys()
    for name, array in tensors.items():
        assert loaded[name].dtype == array.dtype and np.array_equal(loaded[name], array)
    row = store.get_memory(result.memory_ids[0])
    assert row.shapes == {"f32": [3, 5], "f16": [2, 2, 7], "i64": [2, 3]}
    assert row.dtypes == {"f32": "float32", "f16": "float16", "i64": "int64"}
    assert row.span == (0, 8) and row.meta == {"m": 1} and len(row.checksum) == 64
    assert row.nbytes == (store.path / row.blob_path).stat().st_size
    bare = store.get_memory(result.memory_ids[1])
    assert bare.blob_path is None and bare.nbytes == 0 and store.load_payload(bare.id) == {}


def test_many_documents_and_payloads_read_at_once_equal_one_at_a_time(make_store, rng):
    store = make_store()
    ids, memories = [], []
    for i in range(3):
        tensors = {"w": rng.standard_normal((2, 4)).astype(np.float32)}
        result = store.add_document(doc(i), [RecordIn("slots", unit_rows(rng, 1)[0], tensors), RecordIn("chunk", None)])
        ids.append(result.document_id)
        memories += result.memory_ids
    store.remove_document(ids[1])
    docs = store.get_documents([ids[0], ids[1], ids[2], ids[0]])
    assert sorted(docs) == [ids[0], ids[2]] and docs[ids[2]] == store.get_document(ids[2])
    kept = [memories[0], memories[1], memories[4], memories[5]]
    payloads = store.load_payloads(kept)
    assert sorted(payloads) == sorted(kept)
    for m in kept:
        one = store.load_payload(m)
        assert one.keys() == payloads[m].keys() and all(np.array_equal(one[k], payloads[m][k]) for k in one)
    with pytest.raises(MemoryNotFoundError):
        store.load_payloads([memories[0], memories[2]])      # memories[2] went with its document


def test_bad_records_are_refused(make_store, rng):
    store = make_store()
    with pytest.raises(ValueError, match="span"):
        store.add_document(doc(0), [RecordIn("chunk", None, span=(0, 10_000))])
    with pytest.raises(ValueError, match="NaN"):
        store.add_document(doc(0), [RecordIn("chunk", np.full(4, np.nan, np.float32))])
    with pytest.raises(ValueError, match="kind"):
        store.add_document(doc(0), [RecordIn("", None)])
    assert store.count_documents() == 0


def test_stats_are_consistent(make_store, rng):
    store = make_store()
    for i in range(12):
        records = [keyed(unit_rows(rng, 1)[0], tensors={"x": np.full((i + 1,), i, np.float32)})]
        if i % 3 == 0:
            records.append(RecordIn("summary", unit_rows(rng, 1)[0]))
        if i % 4 == 0:
            records.append(RecordIn("note", None))
        store.add_document(doc(i, stream=f"s{i % 2}" if i < 10 else None), records)
    store.add_document(doc(0), [])  # duplicate: no write, no generation bump
    store.remove_document(5)
    stats = store.stats()
    rows = store.list_documents()
    assert stats["documents"] == store.count_documents() == len(rows) == 11
    assert stats["memories"] == sum(r.n_memories for r in rows) == sum(stats["memories_by_kind"].values())
    assert stats["memories_by_kind"] == {"chunk": 11, "note": 2, "summary": 4}  # document 5 had a note
    assert stats["streams"] == 2
    assert stats["index_vectors"] == 15  # chunks and summaries have keys, notes do not
    assert stats["blob_bytes"] == sum(p.stat().st_size for p in (store.path / "blobs").rglob("*.seg"))
    assert stats["generation"] == 13  # 12 adds and one removal
    assert stats["key_dim"] == 16 and stats["model_id"] == "tiny/model" and stats["method"] == "rag"
    assert stats["db_bytes"] > 0
    assert [r.id for r in store.list_documents(stream="s1")] == [2, 4, 6, 8, 10]
    assert [r.id for r in store.list_documents(limit=3, offset=2)] == [3, 4, 6]


def test_stream_length_gives_the_next_position(make_store):
    store = make_store()
    assert store.stream_length("news") == 0
    for i in range(3):
        store.add_document(doc(i, stream="news", position=i), [])
    store.add_document(doc(9, stream="other", position=0), [])
    assert store.stream_length("news") == 3
    store.remove_document(2)  # position 1 goes; the next document still takes 3, not 2
    assert store.stream_length("news") == 3
