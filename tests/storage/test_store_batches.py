"""Batched writes, segment files, the index file's save policy, catching up, and HNSW indexes."""

from __future__ import annotations

import numpy as np
import pytest

from storage import RecordIn, Store
from storage.index import IndexSpec, VectorIndex, read_sidecar
from storehelpers import DIM, brute_force, doc, files_under, keyed, unit_rows


def _segments(store: Store) -> set[str]:
    return {p for p in files_under(store.path) if p.startswith("blobs/")}


def _items(rng, first: int, n: int, dim: int = DIM):
    keys = unit_rows(rng, n, dim)
    return [(doc(first + i), [keyed(keys[i], tensors={"h": np.full((3,), first + i, np.float32)})])
            for i in range(n)], keys


def test_a_batch_is_one_write_with_duplicates_named(make_store, rng):
    store = make_store()
    stored = store.add_document(doc(0), [keyed(unit_rows(rng, 1)[0])]).document_id
    generation = store.info and store._keeper.generation
    items, _ = _items(rng, 1, 4)
    items.insert(2, (doc(0), [keyed(unit_rows(rng, 1)[0])]))  # already stored
    items.append((doc(3), [keyed(unit_rows(rng, 1)[0])]))       # the same text as an item of this batch
    results = store.add_documents(items)
    assert [r.duplicate for r in results] == [False, False, True, False, False, True]
    assert results[2].document_id == stored and results[2].memory_ids == []
    assert results[5].document_id == results[3].document_id  # doc(3) is item 3
    assert store._keeper.generation == generation + 1          # one commit for the whole batch
    assert store.count_documents() == 5
    segments = _segments(store)
    assert len([p for p in segments if p.endswith(".seg")]) == 1  # every payload of the batch in one file
    for r in results[:2] + results[3:5]:
        memory = r.memory_ids[0]
        value = store.get_document(r.document_id).text.split(":")[0].split()[-1]
        assert store.load_payload(memory)["h"].tolist() == [float(value)] * 3


def test_a_bad_item_refuses_the_whole_batch_before_anything_is_written(make_store, rng):
    store = make_store()
    items, _ = _items(rng, 0, 3)
    before = files_under(store.path)
    items[2][1][0].span = (0, 10_000)
    with pytest.raises(ValueError, match="span"):
        store.add_documents(items)
    assert store.count_documents() == 0
    assert files_under(store.path) == before


def test_a_shared_segment_is_deleted_with_its_last_record(make_store, rng):
    store = make_store()
    items, _ = _items(rng, 0, 3)
    results = store.add_documents(items)
    (segment,) = _segments(store)
    store.remove_document(results[0].document_id)
    assert _segments(store) == {segment}
    assert store.load_payload(results[2].memory_ids[0])["h"].tolist() == [2.0] * 3
    store.remove_documents([results[1].document_id, results[2].document_id])
    assert _segments(store) == set()
    assert store.verify().healthy


def test_a_damaged_record_in_a_segment_is_named_and_its_neighbours_still_read(make_store, rng):
    store = make_store()
    results = store.add_documents(_items(rng, 0, 3)[0])
    (segment,) = _segments(store)
    path = store.path / segment
    data = bytearray(path.read_bytes())
    row = store.get_memory(results[1].memory_ids[0])
    data[row.nbytes + 20] ^= 0xFF  # a byte inside the second record (the first record is as long)
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    store._blobs._cache.clear()
    assert store.load_payload(results[0].memory_ids[0])["h"].tolist() == [0.0] * 3
    assert store.load_payload(results[2].memory_ids[0])["h"].tolist() == [2.0] * 3
    from storage import CorruptBlobError

    with pytest.raises(CorruptBlobError, match="checksum"):
        store.load_payload(results[1].memory_ids[0])
    problems = store.verify().problems
    assert len(problems) == 1 and f"memory {results[1].memory_ids[0]}" in problems[0]


def test_the_index_file_is_saved_now_and_then_not_after_every_write(make_store, rng, monkeypatch):
    saves = []
    real = VectorIndex.save
    monkeypatch.setattr(VectorIndex, "save", lambda self, path, generation: saves.append(self.ntotal) or
                        real(self, path, generation))
    store = make_store()
    keys = unit_rows(rng, 300)
    for i in range(300):
        store.add_document(doc(i), [keyed(keys[i])])
    # saved when the changes reach half the file: 1, 2, 3, 5, 8, ... so about log(300) / log(1.5) times
    assert 8 <= len(saves) <= 20
    assert sum(saves) <= 3 * 300 + 10  # vectors written in all: a small multiple of those held
    store.close()
    assert read_sidecar(store.path / "index" / "1.faiss")["count"] == 300  # close saves what is left


def test_a_file_behind_the_database_is_caught_up_not_rebuilt(make_store, rng, monkeypatch):
    store = make_store()
    items, keys = _items(rng, 0, 40)
    results = store.add_documents(items)
    store.close()
    path = store.path
    writer = Store.open(path, write=True)
    writer._keeper.save = lambda: None  # nothing more reaches the file: it stays at 40 vectors
    more, more_keys = _items(rng, 40, 25)
    later = writer.add_documents(more)
    writer.remove_document(results[3].document_id)
    writer.add_document(doc(1000), [])  # a commit without keys
    writer._keeper.dirty = False
    writer.close()
    meta = read_sidecar(path / "index" / "1.faiss")
    assert meta["count"] == 40
    monkeypatch.setattr("storage.keeper.IndexKeeper.rebuild",
                        lambda self: (_ for _ in ()).throw(AssertionError("rebuilt instead of caught up")))
    with Store.open(path) as reader:
        ids = np.array([r.memory_ids[0] for r in results + later])
        all_keys = np.concatenate([keys, more_keys])
        keep = ids != results[3].memory_ids[0]
        for q in unit_rows(rng, 5):
            want, _ = brute_force(all_keys[keep], ids[keep], q, 7)
            assert [h.memory_id for h in reader.search(q, 7)] == want
        assert reader.index_info()["vectors"] == 64


def test_a_reader_follows_the_writer_by_what_changed(make_store, rng, monkeypatch):
    store = make_store()
    items, keys = _items(rng, 0, 30)
    results = store.add_documents(items)
    reader = Store.open(store.path)
    q = unit_rows(rng, 1)[0]
    reader.search(q, 3)
    loads = []
    monkeypatch.setattr(VectorIndex, "load", classmethod(lambda cls, *a, **kw: loads.append(1)))
    more, more_keys = _items(rng, 30, 10)
    later = store.add_documents(more)
    store.remove_document(results[0].document_id)
    ids = np.array([r.memory_ids[0] for r in results[1:] + later])
    want, _ = brute_force(np.concatenate([keys[1:], more_keys]), ids, q, 5)
    assert [h.memory_id for h in reader.search(q, 5)] == want
    assert loads == []  # followed in memory, the file never read again
    reader.close()


def _clustered(rng, n: int, dim: int = 32, clusters: int = 40) -> np.ndarray:
    centers = rng.standard_normal((clusters, dim))
    x = centers[rng.integers(0, clusters, n)] + 0.4 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_hnsw_is_recorded_survives_reopening_and_finds_the_exact_neighbours(make_store, rng):
    store = make_store(key_dim=32)
    keys = _clustered(rng, 3000)
    results = store.add_documents([(doc(i), [keyed(keys[i])]) for i in range(3000)])
    ids = np.array([r.memory_ids[0] for r in results])
    assert store.index_info()["kind"] == "flat"  # small: exact
    assert store.reindex(IndexSpec(kind="hnsw", m=16, ef_search=64)) == 3000
    store.close()
    with Store.open(store.path) as reader:
        info = reader.index_info()
        assert info["kind"] == "hnsw" and info["spec"]["kind"] == "hnsw"
        assert info["params"] == {"m": 16, "ef_construction": 80, "ef_search": 64}
        queries = _clustered(rng, 50)
        recall = np.mean([len({h.memory_id for h in reader.search(q, 10)} & set(brute_force(keys, ids, q, 10)[0])) / 10
                          for q in queries])
        assert recall >= 0.95


def test_removed_vectors_of_an_hnsw_graph_are_never_found_and_are_compacted(make_store, rng):
    store = make_store(key_dim=32)
    keys = _clustered(rng, 500)
    store.reindex(IndexSpec(kind="hnsw"))
    results = store.add_documents([(doc(i), [keyed(keys[i])]) for i in range(500)])
    gone = [r.document_id for r in results[:80]]
    store.remove_documents(gone)
    info = store.index_info()
    assert info["vectors"] == 420 and info["tombstones"] == 80
    gone_memories = {r.memory_ids[0] for r in results[:80]}
    for q in keys[:20]:
        assert not {h.memory_id for h in store.search(q, 10)} & gone_memories
    store.close()
    with Store.open(store.path, write=True) as writer:  # tombstones survive the file
        assert writer.index_info()["tombstones"] == 80
        writer.remove_documents([r.document_id for r in results[80:110]])  # past a fifth (100): rebuilt then
        info = writer.index_info()
        assert info["kind"] == "hnsw" and info["vectors"] == 390
        assert info["tombstones"] == 9  # the removals after the rebuild at the 101st


def test_auto_moves_from_flat_to_hnsw_as_the_collection_grows(make_store, rng, monkeypatch):
    monkeypatch.setattr("storage.index.AUTO_FLAT_BYTES", 200 * 32 * 4)
    store = make_store(key_dim=32)
    keys = _clustered(rng, 400)
    store.add_documents([(doc(i), [keyed(keys[i])]) for i in range(150)])
    assert store.index_info()["kind"] == "flat"
    store.add_documents([(doc(i), [keyed(keys[i])]) for i in range(150, 400)])
    info = store.index_info()
    assert info["kind"] == "hnsw" and info["vectors"] == 400 and info["spec"]["kind"] == "auto"


@pytest.mark.parametrize("bad, message", [
    ({"kind": "ivf"}, "kind must be one of auto, flat, hnsw"),
    ({"m": 1}, "m must be an integer from 2"),
    ({"ef_search": "64"}, "ef_search must be an integer"),
    ({"nprobe": 4}, "unknown index parameter"),
])
def test_bad_index_specs_are_refused_with_what_is_wrong(bad, message):
    with pytest.raises(ValueError, match=message):
        IndexSpec.from_dict(bad)


def test_records_without_payload_write_no_segment(make_store, rng):
    store = make_store()
    store.add_documents([(doc(i), [keyed(unit_rows(rng, 1)[0]), RecordIn("note", None)]) for i in range(3)])
    assert _segments(store) == set()


def test_a_failed_batch_on_an_hnsw_graph_leaves_later_writes_and_searches_whole(make_store, rng, monkeypatch):
    store = make_store(key_dim=32)
    store.reindex(IndexSpec(kind="hnsw"))
    keys = _clustered(rng, 60)
    store.add_documents([(doc(i), [keyed(keys[i])]) for i in range(30)])
    real = Store._insert

    def insert_then_fail(self, *args):
        real(self, *args)  # rows inserted (ids handed out), then the commit never happens
        raise RuntimeError("disk full at commit")

    monkeypatch.setattr(Store, "_insert", insert_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        store.add_documents([(doc(i), [keyed(keys[i])]) for i in range(30, 45)])
    monkeypatch.undo()
    assert store.count_documents() == 30 and store.index_info()["tombstones"] == 0
    results = store.add_documents([(doc(i), [keyed(keys[i])]) for i in range(30, 60)])  # the same ids again
    for i in (31, 44, 59):
        assert store.search(keys[i], 1)[0].memory_id == results[i - 30].memory_ids[0]
    store.close()
    with Store.open(store.path, write=True) as writer:
        assert writer.index_info()["vectors"] == 60 and writer.verify().problems == []
        assert writer.search(keys[59], 1)[0].memory_id == results[-1].memory_ids[0]


def test_auto_goes_back_to_flat_only_well_below_the_line(make_store, rng, monkeypatch):
    monkeypatch.setattr("storage.index.AUTO_FLAT_BYTES", 200 * 32 * 4)
    store = make_store(key_dim=32)
    keys = _clustered(rng, 260)
    results = store.add_documents([(doc(i), [keyed(keys[i])]) for i in range(260)])
    assert store.index_info()["kind"] == "hnsw"
    store.remove_documents([r.document_id for r in results[:80]])  # 180 left: under the line, over half of it
    assert store.index_info()["kind"] == "hnsw"
    store.remove_documents([r.document_id for r in results[80:170]])  # 90 left: under half the line
    info = store.index_info()
    assert info["kind"] == "flat" and info["vectors"] == 90 and info["tombstones"] == 0
