"""Damage the store on disk and check that it is detected and named: blobs, orphans, index disagreements."""

from __future__ import annotations

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
