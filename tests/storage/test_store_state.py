"""Method state kept by a store: saved atomically, checksummed, per collection, counted in stats, checked by verify."""

from __future__ import annotations

import numpy as np
import pytest

from storage import CorruptStateError, Store, StoreError
from storage.state import StateFiles, content_checksum
from storehelpers import doc, files_under


def _state(rng) -> dict[str, np.ndarray]:
    return {"layer.0.lora_A": rng.standard_normal((4, 16)).astype(np.float32),
            "layer.0.lora_B": np.zeros((16, 4), dtype=np.float32),
            "optim.step": np.array(3.0, dtype=np.float32),
            "ids": np.arange(5, dtype=np.int64)}


def _same(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
        assert np.array_equal(a[k], b[k])


def test_saved_state_survives_reopening(make_store, rng):
    store = make_store()
    assert store.load_state("finetune") is None
    state = _state(rng)
    store.save_state("finetune", state)
    _same(store.load_state("finetune"), state)
    path = store.path
    store.close()
    with Store.open(path) as reader:
        _same(reader.load_state("finetune"), state)
        assert reader.load_state("other") is None
    assert "state/1/finetune.safetensors" in files_under(path)


def test_saving_again_replaces_the_state_and_leaves_no_temp_files(make_store, rng):
    store = make_store()
    store.save_state("s", _state(rng))
    newer = {"w": np.ones((2, 2), dtype=np.float32)}
    store.save_state("s", newer)
    _same(store.load_state("s"), newer)
    assert sorted(p for p in files_under(store.path) if p.startswith("state/")) == ["state/1/s.safetensors"]


def test_a_read_only_store_refuses_to_save_state(make_store, rng):
    store = make_store()
    store.close()
    with Store.open(store.path) as reader, pytest.raises(StoreError, match="read-only"):
        reader.save_state("s", _state(rng))


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden", "x" * 101])
def test_unsafe_state_names_are_refused(make_store, rng, bad):
    with pytest.raises(ValueError, match="state name"):
        make_store().save_state(bad, _state(rng))


def test_empty_or_non_numpy_states_are_refused(make_store):
    store = make_store()
    with pytest.raises(ValueError, match="at least one"):
        store.save_state("s", {})
    with pytest.raises(TypeError, match="numpy"):
        store.save_state("s", {"w": [1, 2, 3]})


def test_a_flipped_byte_is_caught_by_load_and_verify(make_store, rng):
    store = make_store()
    store.add_document(doc(0), [])
    store.save_state("finetune", _state(rng))
    path = store.path / "state" / "1" / "finetune.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10                       # inside the last array's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptStateError, match="checksum") as err:
        store.load_state("finetune")
    assert "finetune" in str(err.value)
    problems = store.verify().problems
    assert len(problems) == 1 and "finetune" in problems[0] and "checksum" in problems[0]
    assert store.verify(check_blobs=False).problems == []


def test_a_file_that_is_not_a_state_is_refused(make_store, rng):
    store = make_store()
    store.save_state("s", _state(rng))
    path = store.path / "state" / "1" / "s.safetensors"
    path.write_bytes(b"not a safetensors file at all")
    with pytest.raises(CorruptStateError, match="readable"):
        store.load_state("s")
    from safetensors.numpy import save

    path.write_bytes(save({"w": np.ones(3, dtype=np.float32)}))  # valid safetensors, no memkit header
    with pytest.raises(CorruptStateError, match="not a memkit state"):
        store.load_state("s")


def test_the_checksum_depends_on_names_shapes_dtypes_and_values():
    base = {"a": np.arange(6, dtype=np.float32).reshape(2, 3)}
    variants = [{"b": base["a"]}, {"a": base["a"].reshape(3, 2)}, {"a": base["a"].astype(np.float64)},
                {"a": base["a"] + 1}]
    assert len({content_checksum(v) for v in [base, *variants]}) == 5
    assert content_checksum(base) == content_checksum({"a": base["a"].copy()})


def test_states_of_two_collections_are_separate(tmp_path, rng):
    files_1, files_2 = StateFiles(tmp_path, 1), StateFiles(tmp_path, 2)
    files_1.save("s", {"w": np.ones(2, dtype=np.float32)})
    assert files_2.load("s") is None and files_1.names() == ["s"]


def test_stats_count_state_key_and_text_bytes(make_store, rng):
    store = make_store()
    key = rng.standard_normal(16).astype(np.float32)
    key /= np.linalg.norm(key)
    from storehelpers import keyed

    texts = [doc(0).text, "héllo wörld"]
    store.add_document(doc(0), [keyed(key)])
    from storage import DocumentIn

    store.add_document(DocumentIn(text=texts[1], source="u"), [])
    stats = store.stats()
    assert stats["key_bytes"] == 16 * 4
    assert stats["text_bytes"] == sum(len(t.encode("utf-8")) for t in texts)
    assert stats["state_bytes"] == 0
    store.save_state("s", _state(rng))
    assert store.stats()["state_bytes"] == (store.path / "state" / "1" / "s.safetensors").stat().st_size
