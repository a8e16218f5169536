"""The parts under the store: blob files, the vector index and its files, and what the package imports."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys

import numpy as np
import pytest

from storage.blobs import BlobIntegrityError, BlobStore
from storage.index import IndexFileError, VectorIndex, gpu_available, read_sidecar
from storehelpers import brute_force, unit_rows


def test_blob_write_read_round_trip_and_layout(tmp_path, rng):
    blobs = BlobStore(tmp_path)
    tensors = {"a": rng.standard_normal((3, 4)).astype(np.float32), "b": np.arange(5, dtype=np.int32)}
    rel, checksum, nbytes = blobs.write(tensors)
    assert re.fullmatch(r"blobs/([0-9a-f]{2})/\1[0-9a-f]{30}\.safetensors", rel)
    data = (tmp_path / rel).read_bytes()
    assert checksum == hashlib.sha256(data).hexdigest() and nbytes == len(data)
    loaded = blobs.read(rel, checksum)
    assert all(np.array_equal(loaded[k], v) and loaded[k].dtype == v.dtype for k, v in tensors.items())
    assert blobs.list_all() == [rel]  # no temp file left behind

    rel2, checksum2, _ = blobs.write({"a": np.zeros(1, np.float32)})
    assert rel2 != rel and checksum2 != checksum
    assert blobs.list_all() == sorted([rel, rel2])
    blobs.delete(rel)
    blobs.delete(rel)  # already gone: fine
    assert blobs.list_all() == [rel2]
    assert not (tmp_path / rel).parent.exists() or (tmp_path / rel).parent == (tmp_path / rel2).parent


def test_read_blobs_are_kept_verified_and_read_only_within_the_cache_bound(tmp_path, monkeypatch):
    blobs = BlobStore(tmp_path, cache_bytes=2500)
    made = [blobs.write({"x": np.full(200, i, np.float32)}) for i in range(3)]      # ~900 bytes each
    reads = []
    real = blobs.read_verified
    monkeypatch.setattr(blobs, "read_verified", lambda rel, c, *at: reads.append(rel) or real(rel, c, *at))
    first = blobs.read(*made[0][:2])
    assert not first["x"].flags.writeable                  # shared with the cache: callers copy to change
    first["extra"] = np.zeros(1)                           # the dict is the caller's own
    again = blobs.read(*made[0][:2])
    assert reads == [made[0][0]] and set(again) == {"x"} and again["x"][0] == 0
    with pytest.raises(BlobIntegrityError, match="checksum"):
        blobs.read(made[0][0], "0" * 64)                   # a cached blob still needs its own checksum
    blobs.read(*made[1][:2])
    blobs.read(*made[2][:2])                               # over the bound: the least recently read goes
    blobs.read(*made[0][:2])
    assert reads.count(made[0][0]) == 3 and blobs._cached <= 2500
    blobs.delete(made[0][0])
    with pytest.raises(BlobIntegrityError, match="missing"):
        blobs.read(*made[0][:2])                           # a deleted blob is not served from memory


def test_blob_read_refuses_a_wrong_checksum_or_a_missing_file(tmp_path):
    blobs = BlobStore(tmp_path)
    rel, checksum, _ = blobs.write({"x": np.ones(8, np.float16)})
    with pytest.raises(BlobIntegrityError, match="checksum"):
        blobs.read(rel, "0" * 64)
    (tmp_path / rel).unlink()
    with pytest.raises(BlobIntegrityError, match="missing"):
        blobs.read(rel, checksum)
    with pytest.raises(ValueError):
        blobs.write({})


def test_index_search_matches_brute_force_and_drops_fillers(rng):
    vecs = unit_rows(rng, 50, 8)
    ids = np.arange(1000, 1050)
    index = VectorIndex.build(8, ids, vecs, use_gpu=False)
    for q in unit_rows(rng, 10, 8):
        scores, found = index.search(q[None], 7)
        truth, truth_scores = brute_force(vecs, ids, q, 7)
        assert found[0].tolist() == truth
        np.testing.assert_allclose(scores[0], truth_scores, rtol=1e-5, atol=1e-6)
    small = VectorIndex.build(8, [1, 2], vecs[:2], use_gpu=False)
    scores, found = small.search(vecs[:3], 5)
    assert [len(f) for f in found] == [2, 2, 2] and all((f >= 0).all() for f in found)
    empty = VectorIndex(8, use_gpu=False)
    assert [len(f) for f in empty.search(vecs[:2], 3)[1]] == [0, 0]


def test_index_remove_and_wrong_shapes(rng):
    vecs = unit_rows(rng, 10, 4)
    index = VectorIndex.build(4, np.arange(10), vecs, use_gpu=False)
    assert index.remove([3, 4, 99]) == 2
    assert index.ntotal == 8 and sorted(index.ids().tolist()) == [0, 1, 2, 5, 6, 7, 8, 9]
    assert 3 not in index.search(vecs[3][None], 8)[1][0].tolist()
    with pytest.raises(ValueError):
        index.add([1], unit_rows(rng, 1, 5))
    with pytest.raises(ValueError):
        index.add([1, 2], unit_rows(rng, 1, 4))


def test_key_frequencies_count_the_vectors_using_each_dimension_and_follow_changes():
    vecs = np.array([[1, 0, 0, 0], [0.6, 0.8, 0, 0], [0, 0, 0, -1]], dtype=np.float32)
    index = VectorIndex.build(4, [10, 11, 12], vecs, use_gpu=False)
    assert index.key_frequencies(block=2).tolist() == [2, 1, 0, 1]      # read in blocks smaller than the index
    index.remove([10])
    assert index.key_frequencies().tolist() == [1, 1, 0, 1]
    index.add([13], np.array([[0, 0, 1, 0]], dtype=np.float32))
    assert index.key_frequencies().tolist() == [1, 1, 1, 1]
    assert VectorIndex(3, use_gpu=False).key_frequencies().tolist() == [0, 0, 0]


def test_index_save_load_round_trip_with_sidecar(tmp_path, rng):
    vecs = unit_rows(rng, 30, 6)
    index = VectorIndex.build(6, np.arange(30) * 7, vecs, use_gpu=False)
    path = tmp_path / "index" / "3.faiss"
    index.save(path, generation=41)
    meta = read_sidecar(path)
    assert {k: meta[k] for k in ("generation", "dim", "count", "removed")} == {
        "generation": 41, "dim": 6, "count": 30, "removed": []}
    assert meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert sorted(p.name for p in path.parent.iterdir()) == ["3.faiss", "3.json"]  # no temp files
    loaded = VectorIndex.load(path, meta, use_gpu=False)
    assert loaded.dim == 6 and loaded.ntotal == 30
    q = unit_rows(rng, 5, 6)
    assert [f.tolist() for f in loaded.search(q, 4)[1]] == [f.tolist() for f in index.search(q, 4)[1]]
    assert np.array_equal(loaded.vectors_of([7, 21]), vecs[[1, 3]])
    dropped = VectorIndex.load(path, dict(meta, removed=[0, 7]), use_gpu=False)  # removals listed later
    assert dropped.ntotal == 28 and 7 not in dropped.ids().tolist()


def test_index_file_damage_is_one_clean_line_never_a_faiss_message(tmp_path, rng):
    index = VectorIndex.build(6, np.arange(30), unit_rows(rng, 30, 6), use_gpu=False)
    path = tmp_path / "1.faiss"
    index.save(path, generation=1)
    meta = read_sidecar(path)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x40  # a vector altered: FAISS would still load it
    path.write_bytes(bytes(data))
    with pytest.raises(IndexFileError, match="checksum"):
        VectorIndex.load(path, meta)
    path.write_bytes(b"garbage")
    with pytest.raises(IndexFileError) as err:
        VectorIndex.load(path, dict(meta, sha256=hashlib.sha256(b"garbage").hexdigest()))
    assert str(err.value) == "is not a readable FAISS index"
    assert read_sidecar(tmp_path / "none.faiss") is None


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="faiss has no GPU support or no CUDA device is present")
def test_gpu_search_equals_cpu_search(rng):
    vecs = unit_rows(rng, 25_000, 32)
    ids = np.arange(len(vecs))
    gpu = VectorIndex.build(32, ids, vecs, use_gpu=True)
    cpu = VectorIndex.build(32, ids, vecs, use_gpu=False)
    q = unit_rows(rng, 20, 32)
    assert [f.tolist() for f in gpu.search(q, 10)[1]] == [f.tolist() for f in cpu.search(q, 10)[1]]


def test_storage_imports_no_model_code():
    code = (
        "import sys, storage, storage.store\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'transformers', 'memkit'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_key_frequencies_are_kept_up_to_date_without_a_recount(rng):
    from storage.index import VectorIndex

    dim = 64
    def sparse(n):
        v = rng.standard_normal((n, dim)).astype(np.float32)
        v[rng.random((n, dim)) < 0.8] = 0.0
        return v

    first = sparse(50)
    index = VectorIndex.build(dim, np.arange(50), first, use_gpu=False)
    assert (index.key_frequencies() == (first != 0).sum(0)).all()        # counted once ...
    more = sparse(30)
    index.add(np.arange(100, 130), more)
    index.remove([3, 7, 7, 999, 110])                                    # a repeat and an unknown id are ignored
    kept = np.concatenate([np.delete(first, [3, 7], axis=0), np.delete(more, [10], axis=0)])
    expected = (kept != 0).sum(0)
    assert (index.key_frequencies() == expected).all()                   # ... then kept by add and remove
    recounted = VectorIndex.build(dim, index.ids(), index.vectors_of(index.ids()), use_gpu=False)
    assert (recounted.key_frequencies() == expected).all()
