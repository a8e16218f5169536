"""A store opened once for all its collections (what a server holds), its job log, and listing with filters."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from storage import Store
from storage.errors import CollectionNotFoundError, StoreExistsError, StoreLockedError
from storage.jobs import JobLog
from storage.root import InvalidCollectionName, StoreRoot
from storehelpers import doc, files_under, keyed

SPEC = dict(model_id="tiny/model", model_revision=None, model_fingerprint="fp-1", method="rag",
            method_config={"top_k": 2}, key_dim=None)


def unit(rng, d=8):
    v = rng.standard_normal(d).astype(np.float32)
    return v / np.linalg.norm(v)


def test_an_empty_store_gets_collections_that_share_one_lock_and_keep_apart(tmp_path, new_db_url, rng):
    with StoreRoot.open(tmp_path / "s", write=True, create=True, db_url=new_db_url()) as root:
        assert root.collections() == []
        a = root.create_collection("a", **SPEC)
        b = root.create_collection("b", **{**SPEC, "method": "adapter"})
        key = unit(rng)
        a.add_document(doc(1), [keyed(key, tensors={"x": np.ones(3, np.float32)})])
        b.add_document(doc(2), [keyed(key)])
        assert [c.name for c in root.collections()] == ["a", "b"]
        assert [h.text for h in a.search_many(key[None], 5, with_text=True)[0]] == [doc(1).text]
        assert [h.text for h in b.search_many(key[None], 5, with_text=True)[0]] == [doc(2).text]
        assert root.collection("a") is a
        with pytest.raises(StoreLockedError):                  # the root holds the writer lock for all of them
            Store.open(tmp_path / "s", write=True, collection="a")
        with pytest.raises(StoreExistsError, match="already has a collection 'a'"):
            root.create_collection("a", **SPEC)
        with pytest.raises(InvalidCollectionName, match="not allowed"):
            root.create_collection("../x", **SPEC)
    with Store.open(tmp_path / "s", write=True, collection="b") as store:   # closed: the lock is free again
        assert store.count_documents() == 1


def test_dropping_a_collection_removes_its_rows_blobs_index_and_state_and_nothing_else(tmp_path, new_db_url, rng):
    with StoreRoot.open(tmp_path / "s", write=True, create=True, db_url=new_db_url()) as root:
        keep, gone = root.create_collection("keep", **SPEC), root.create_collection("gone", **SPEC)
        keep.add_document(doc(1), [keyed(unit(rng), tensors={"x": np.ones(3, np.float32)})])
        before = files_under(tmp_path / "s")
        for i in range(3):
            gone.add_document(doc(10 + i), [keyed(unit(rng), tensors={"x": np.full(3, i, np.float32)})])
        gone.save_state("finetune", {"w": np.zeros(2, np.float32)})
        gone.search_many(unit(rng)[None], 1)
        assert root.drop_collection("gone") == 3
        assert [c.name for c in root.collections()] == ["keep"]
        with pytest.raises(CollectionNotFoundError, match="it has: 'keep'"):
            root.collection("gone")
        with pytest.raises(CollectionNotFoundError):
            root.drop_collection("gone")
        keep.search_many(unit(rng)[None], 1)
    left = files_under(tmp_path / "s")
    assert {f for f in left if f.startswith(("blobs/", "state/"))} == {f for f in before
                                                                     if f.startswith(("blobs/", "state/"))}
    with Store.open(tmp_path / "s", collection="keep") as store:
        assert store.verify().healthy


def test_a_new_collection_never_inherits_a_dropped_ones_state_under_a_reused_id(tmp_path, new_db_url, rng):
    with StoreRoot.open(tmp_path / "s", write=True, create=True, db_url=new_db_url()) as root:
        old = root.create_collection("old", **SPEC)
        old.save_state("finetune", {"w": np.ones(2, np.float32)})
        state_dir = old._state.root
        root.drop_collection("old")
        state_dir.mkdir(parents=True)                          # as a crash between the commit and the deletes
        (state_dir / "finetune.safetensors").write_bytes(b"left over")
        new = root.create_collection("new", **SPEC)
        assert new.load_state("finetune") is None


def test_a_reader_root_opens_no_lock_and_refuses_writes(tmp_path, new_db_url):
    StoreRoot.open(tmp_path / "s", write=True, create=True, db_url=new_db_url()).close()
    with StoreRoot.open(tmp_path / "s") as root:
        assert not root.writable
        with pytest.raises(Exception, match="read-only"):
            root.create_collection("a", **SPEC)


def test_listing_filters_by_stream_source_and_time(make_store, rng):
    store = make_store(key_dim=8)
    stamps = ["2020-01-01T00:00:00+00:00", "2021-06-01T00:00:00+00:00", None, "2023-01-01T00:00:00+00:00"]
    for i, stamp in enumerate(stamps):
        store.add_document(doc(i, timestamp=stamp, stream="s" if i % 2 else None), [keyed(unit(rng))])
    ids = lambda rows: [r.id for r in rows]
    assert ids(store.list_documents(since="2021-01-01T00:00:00+00:00")) == [2, 4]
    assert ids(store.list_documents(until="2021-06-01T00:00:00+00:00")) == [1, 2]
    assert ids(store.list_documents(since="2020-06-01T00:00:00+00:00", until="2022-01-01T00:00:00+00:00")) == [2]
    assert ids(store.list_documents(source="file2.txt")) == [3]
    assert ids(store.list_documents(stream="s", source="file1.txt")) == [2]
    assert store.list_documents(source="nothing") == []


def test_job_log_keeps_jobs_across_processes_and_marks_unfinished_ones_interrupted(tmp_path):
    log = JobLog(tmp_path)
    done = log.new(kind="ingest", status="done")
    running = log.new(kind="ingest")
    running["status"] = "running"
    log.save(running)
    # another process (as a restarted server) reads the same files
    code = ("import sys; from storage.jobs import JobLog; print(JobLog(sys.argv[1]).interrupt_unfinished('gone'))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str([running["id"]])
    assert log.get(running["id"])["status"] == "interrupted"
    assert log.get(running["id"])["error"] == "gone"
    assert log.get(done["id"])["status"] == "done"
    assert [j["id"] for j in log.all()] == [done["id"], running["id"]]
    assert log.get("../../etc/passwd") is None and log.get("0" * 16) is None
