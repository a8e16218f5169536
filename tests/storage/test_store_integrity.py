"""Damage the store on disk and check that it is detected and named: blobs, orphans, index disagreements."""

from __future__ import annotations

import numpy as np
import pytest

from storage import CorruptBlobError, Store


def _flip_a_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_flipped_byte_raises_corrupt_blob_error_naming_the_document(filled):
    store, _ = filled
    memory = store.memories(12)[0]
    _flip_a_byte(store.path / memory.blob_path)

    with pytest.raises(CorruptBlobError) as err:
        store.load_payload(memory.id)
    assert (err.value.document_id, err.value.memory_id) == (12, memory.id)
    assert "document 12" in str(err.value) and "memkit doctor" in str(err.value)
    assert "checksum" in str(err.value)

    problems = store.verify().problems
    assert len(problems) == 1
    assert "document 12" in problems[0] and memory.blob_path in problems[0]
    assert store.verify(check_blobs=False).problems == []  # the file exists; only the checksum pass sees the damage
    assert store.load_payload(store.memories(13)[0].id)  # the others still load


def test_missing_blob_is_reported_even_without_checksums(filled):
    store, _ = filled
    memory = store.memories(3)[0]
    (store.path / memory.blob_path).unlink()
    with pytest.raises(CorruptBlobError, match="missing"):
        store.load_payload(memory.id)
    for problems in (store.verify().problems, store.verify(check_blobs=False).problems):
        assert len(problems) == 1 and "document 3" in problems[0] and "missing" in problems[0]


def test_orphan_blob_files_are_reported(filled):
    store, _ = filled
    stray = store.path / "blobs" / "ff" / "ffffffffffffffffffffffffffffffff.safetensors"
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"left behind by a crash")
    problems = store.verify().problems
    assert len(problems) == 1 and "orphan" in problems[0] and "blobs/ff/" in problems[0]
    assert "--repair" in problems[0]
    assert store.remove_orphans() == [stray.relative_to(store.path).as_posix()]
    assert store.verify().problems == [] and not stray.exists()


def test_index_file_disagreeing_with_sql_is_reported_by_a_reader(filled):
    store, _ = filled
    store.close()
    sidecar = store.path / "index" / "1.json"
    sidecar.write_text(sidecar.read_text().replace('"count": 60', '"count": 59'))
    with Store.open(store.path) as reader:
        problems = reader.verify().problems
    assert any("59 of dimension" in p and "--repair" in p for p in problems)
    with Store.open(store.path, write=True) as writer:
        assert writer.repair() == ["rebuilt the index from the database: 60 vectors"]
        assert writer.verify().problems == []


def test_an_interrupt_just_after_the_commit_keeps_the_document_whole(make_store, rng):
    """Ctrl-C or SIGTERM landing in SQLAlchemy's bookkeeping right after COMMIT: the document is in the
    database, so its blobs and index entries must stay."""
    import numpy as np
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from storehelpers import doc, keyed, unit_rows

    store = make_store()
    key = unit_rows(rng, 1)[0]
    assert store.search(key, 1) == []  # the index is loaded: the add's one commit is the document's
    fired = []

    def interrupt(*args):
        if not fired:
            fired.append(True)
            raise KeyboardInterrupt

    event.listen(Session, "after_commit", interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            store.add_document(doc(0), [keyed(key, tensors={"x": np.ones(3, np.float32)})])
    finally:
        event.remove(Session, "after_commit", interrupt)
    assert fired and store.count_documents() == 1
    memory = store.memories(1)[0]
    assert store.load_payload(memory.id)["x"].tolist() == [1.0, 1.0, 1.0]
    assert store.search(key, 1)[0].memory_id == memory.id
    assert store.verify().problems == []


def test_files_of_the_store_that_are_not_regular_files_are_refused_not_waited_on(filled, tmp_path):
    import os

    from storage import StoreError

    store, _ = filled
    store.reindex()
    store.close()
    root = store.path
    sidecar = root / "index" / "1.json"
    sidecar.unlink()
    os.mkfifo(sidecar)  # a FIFO where the sidecar was: read, it would block for ever
    with Store.open(root) as reader:
        assert reader.stats()["index_vectors"] == 60
        assert len(reader.search(np.ones(16, np.float32) / 4, 3)) == 3  # rebuilt from SQL
    sidecar.unlink()
    index_file = root / "index" / "1.faiss"
    index_file.unlink()
    index_file.symlink_to("/dev/zero")  # read, it would fill the memory
    with Store.open(root) as reader:
        problems = reader.verify().problems
    assert any("no usable sidecar" in p for p in problems)
    (root / "write.lock").unlink(missing_ok=True)
    os.mkfifo(root / "write.lock")
    with pytest.raises(StoreError, match="not a regular file"):
        Store.open(root, write=True)
    (root / "write.lock").unlink()
    (root / "store.json").rename(root / "marker.bak")
    os.mkfifo(root / "store.json")
    with pytest.raises(StoreError, match="not a regular file"):
        Store.open(root)


def test_anything_nested_or_linked_under_blobs_is_reported_and_repaired(filled, tmp_path):
    store, _ = filled
    nested = store.path / "blobs" / "ab" / "cd" / "junk"
    nested.parent.mkdir(parents=True)
    nested.write_text("x")
    loop = store.path / "blobs" / "zz"
    loop.symlink_to("zz")  # a link loop: never followed, never resolved
    outside = tmp_path / "keep-me"
    outside.mkdir()
    (outside / "precious").write_text("not the store's")
    (store.path / "blobs" / "yy").symlink_to(outside)
    problems = store.verify().problems
    assert sum("orphan" in p for p in problems) == 3
    assert sorted(store.remove_orphans()) == ["blobs/ab/cd/junk", "blobs/yy", "blobs/zz"]
    assert store.verify().problems == [] and (outside / "precious").read_text() == "not the store's"
    assert store.load_payload(store.memories(1)[0].id)


def test_a_writer_killed_between_its_blobs_and_its_commit_leaves_a_note_the_next_writer_mends(filled):
    import subprocess
    import sys
    import textwrap

    store, _ = filled
    store.close()
    before = set(store._blobs.list_all())
    code = textwrap.dedent(f"""
        import os, numpy as np
        from storage import Store, DocumentIn, RecordIn
        store = Store.open({str(store.path)!r}, write=True)
        store._insert = lambda *a, **k: os._exit(9)   # killed after the blob is on disk, before the commit
        key = np.ones(16, np.float32) / 4
        store.add_document(DocumentIn(text="never committed", source="x"),
                           [RecordIn(kind="chunk", key=key, tensors={{"x": np.ones(2, np.float32)}})])
        """)
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9
    with Store.open(store.path) as reader:
        (left,) = set(reader._blobs.list_all()) - before
        temp = store.path / left.replace(left.rsplit("/", 1)[1], "." + left.rsplit("/", 1)[1] + ".1a2b3c4d.tmp")
        temp.write_bytes(b"half a blob")  # as a kill in the middle of its atomic write leaves one
        report = reader.verify()
    assert report.problems == [] and sum("before its commit" in n for n in report.notes) == 2
    with Store.open(store.path, write=True) as writer:  # the next writer deletes both on opening
        assert set(writer._blobs.list_all()) == before
        assert writer.verify().problems == [] and writer.verify().notes == []
    assert (store.path / "write.pending").read_bytes() == b""
