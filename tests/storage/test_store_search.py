"""Search against brute-force ground truth; reindexing; stale index files; readers following a writer."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

from storage import RecordIn, Store
from storage.index import VectorIndex, read_sidecar
from storage.keeper import IndexKeeper
from storehelpers import DIM, brute_force, doc, keyed, unit_rows

N_DOCS = 200


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def corpus_on_disk(request, tmp_path_factory):
    """200 documents; each has a ``chunk`` key, every fifth also a ``summary`` key, every seventh a keyless note.

    Built once per module and closed (on SQLite, or on a PostgreSQL database kept as a template); ``corpus``
    hands each test its own copy.
    """
    rng = np.random.default_rng(99)
    path = tmp_path_factory.mktemp("corpus") / "store"
    server = request.getfixturevalue("postgres_server") if request.param == "postgres" else None
    template = server.create_database() if server is not None else None
    ids, keys, kinds = [], [], []
    with Store.create(path, model_id="m", model_revision=None, model_fingerprint="fp", method="rag",
                      method_config={}, key_dim=None, db_url=server.url(template) if server else None) as store:
        for i in range(N_DOCS):
            records = [keyed(k) for k in unit_rows(rng, 1)]
            if i % 5 == 0:
                records.append(RecordIn("summary", unit_rows(rng, 1)[0], span=(0, 8), meta={"i": i}))
            if i % 7 == 0:
                records.append(RecordIn("note", None))
            result = store.add_document(doc(i), records)
            for mid, r in zip(result.memory_ids, records):
                if r.key is not None:
                    ids.append(mid)
                    keys.append(r.key)
                    kinds.append(r.kind)
    yield path, np.array(ids), np.stack(keys), np.array(kinds), (server, template)
    if server is not None:
        server.drop_database(template)


@pytest.fixture
def corpus(corpus_on_disk, tmp_path):
    path, ids, keys, kinds, (server, template) = corpus_on_disk
    shutil.copytree(path, tmp_path / "store")
    copy = None
    if server is not None:  # the database too: a copy of the template, named in the copied store.json
        copy = server.create_database(template=template)
        marker = tmp_path / "store" / "store.json"
        marker.write_text(json.dumps({**json.loads(marker.read_text()), "db_url": server.url(copy)}))
    store = Store.open(tmp_path / "store", write=True)
    yield store, ids, keys, kinds
    store.close()
    if copy is not None:
        server.drop_database(copy)


def _ids(hits) -> list[int]:
    return [h.memory_id for h in hits]


def test_search_returns_the_exact_nearest_neighbours(corpus, rng):
    store, ids, keys, _ = corpus
    queries = unit_rows(rng, 50)
    batched = store.search_many(queries, 10)
    for query, hits_of_batch in zip(queries, batched):
        truth, scores = brute_force(keys, ids, query, 10)
        hits = store.search(query, 10)
        assert _ids(hits) == truth == _ids(hits_of_batch)
        np.testing.assert_allclose([h.score for h in hits], scores, rtol=1e-5, atol=1e-6)
    hit = store.search(keys[3], 1)[0]
    assert hit.memory_id == ids[3] and hit.score == pytest.approx(1.0, abs=1e-5)
    row = store.get_memory(hit.memory_id)
    assert (hit.document_id, hit.kind, hit.span, hit.meta) == (row.document_id, row.kind, row.span, row.meta)
    assert hit.source == store.get_document(hit.document_id).source


def test_k_larger_than_the_index_returns_everything(corpus, rng):
    store, ids, _, _ = corpus
    hits = store.search(unit_rows(rng, 1)[0], 10_000)
    assert sorted(_ids(hits)) == sorted(ids.tolist())
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert store.search(unit_rows(rng, 1)[0], 0) == []


def test_kind_filter_over_fetches_until_k_hits(corpus, rng):
    store, ids, keys, kinds = corpus
    summary = kinds == "summary"
    for query in unit_rows(rng, 20):
        truth, _ = brute_force(keys[summary], ids[summary], query, 5)
        hits = store.search(query, 5, kinds={"summary"})
        assert _ids(hits) == truth and {h.kind for h in hits} == {"summary"}
    assert store.search(unit_rows(rng, 1)[0], 5, kinds={"no-such-kind"}) == []
    assert store.search(unit_rows(rng, 1)[0], 5, kinds=set()) == []


def test_reindex_gives_the_same_neighbours(corpus, rng):
    store, ids, _, _ = corpus
    queries = unit_rows(rng, 100)
    before = [_ids(h) for h in store.search_many(queries, 8)]
    assert store.reindex() == len(ids)
    assert [_ids(h) for h in store.search_many(queries, 8)] == before
    assert store.verify().problems == []


def test_clean_reopen_loads_the_index_file_without_rebuilding(corpus, rng, monkeypatch):
    store, *_ = corpus
    queries = unit_rows(rng, 20)
    before = [_ids(h) for h in store.search_many(queries, 5)]
    store.close()
    rebuilds = []
    real = IndexKeeper.rebuild
    monkeypatch.setattr(IndexKeeper, "rebuild", lambda self: (rebuilds.append(1), real(self))[1])
    for write in (False, True):
        with Store.open(store.path, write=write) as again:
            assert [_ids(h) for h in again.search_many(queries, 5)] == before
    assert rebuilds == []


@pytest.mark.parametrize("damage", ["delete_file", "bump_generation", "garbage_file"])
def test_stale_index_is_rebuilt_on_open(corpus, rng, damage):
    store, ids, _, _ = corpus
    queries = unit_rows(rng, 30)
    before = [_ids(h) for h in store.search_many(queries, 5)]
    generation = store.stats()["generation"]
    store.close()
    index_file = store.path / "index" / "1.faiss"
    if damage == "delete_file":
        index_file.unlink()
    elif damage == "bump_generation":
        meta = json.loads(index_file.with_suffix(".json").read_text())
        index_file.with_suffix(".json").write_text(json.dumps({**meta, "generation": meta["generation"] - 1}))
    else:
        index_file.write_bytes(b"not a faiss index")
    damaged_sidecar = read_sidecar(index_file)

    with Store.open(store.path) as reader:  # a reader rebuilds in memory and leaves the files alone
        assert [_ids(h) for h in reader.search_many(queries, 5)] == before
        assert reader.stats()["index_vectors"] == len(ids)
    assert read_sidecar(index_file) == damaged_sidecar

    with Store.open(store.path, write=True) as writer:  # a writer rebuilds and saves
        assert [_ids(h) for h in writer.search_many(queries, 5)] == before
        assert writer.verify().problems == []
    meta = read_sidecar(index_file)
    assert (meta["generation"], meta["dim"], meta["count"]) == (generation, DIM, len(ids))
    assert VectorIndex.load(index_file, meta).ntotal == len(ids)


def test_crash_between_commit_and_index_save_is_repaired_on_open(make_store, rng, monkeypatch, caplog):
    store = make_store()
    keys = unit_rows(rng, 3)
    store.add_document(doc(0), [keyed(keys[0])])

    def no_save(self, path, generation):
        raise OSError("killed before the index was saved")

    monkeypatch.setattr(VectorIndex, "save", no_save)
    with caplog.at_level(logging.WARNING):
        result = store.add_document(doc(1), [keyed(keys[1])])
    assert "could not save index" in caplog.text
    assert store.search(keys[1], 1)[0].memory_id == result.memory_ids[0]  # committed and searchable
    report = store.verify()  # the file lags the database: normal after a crash, mended by the next write
    assert report.problems == [] and any("generation" in n and "memkit reindex" in n for n in report.notes)
    with caplog.at_level(logging.WARNING):
        store.close()  # the index file is still one generation behind, as after a crash
    assert read_sidecar(store.path / "index" / "1.faiss")["generation"] == 1
    monkeypatch.undo()

    with Store.open(store.path, write=True) as again:
        assert again.search(keys[1], 1)[0].memory_id == result.memory_ids[0]
        assert again.verify().problems == []


def test_reader_follows_the_writers_commits(make_store, rng):
    writer = make_store()
    keys = unit_rows(rng, 4)
    writer.add_document(doc(0), [keyed(keys[0])])
    with Store.open(writer.path) as reader:
        assert len(reader.search(keys[0], 10)) == 1
        added = writer.add_document(doc(1), [keyed(keys[1])])
        assert _ids(reader.search(keys[1], 1)) == added.memory_ids
        writer.remove_document(added.document_id)
        assert [h.document_id for h in reader.search(keys[1], 10)] == [1]
        assert reader.count_documents() == 1


def test_search_drops_ids_sql_no_longer_has(make_store, rng):
    writer = make_store()
    keys = unit_rows(rng, 3)
    ids = [writer.add_document(doc(i), [keyed(k)]).memory_ids[0] for i, k in enumerate(keys)]
    with Store.open(writer.path) as reader:
        reader.search(keys[0], 3)
        writer.remove_document(2)
        reader._keeper.refresh = lambda: None  # a reader whose index has not caught up yet
        assert reader.stats()["index_vectors"] == 3
        truth, _ = brute_force(keys[[0, 2]], np.array([ids[0], ids[2]]), keys[1], 3)
        assert _ids(reader.search(keys[1], 3)) == truth


def test_key_frequencies_of_a_store_and_of_a_reader_after_a_removal(make_store, rng):
    store = make_store()
    keys = np.eye(DIM, dtype=np.float32)
    a = store.add_document(doc(0), [keyed(keys[0]), keyed(keys[1])])
    store.add_document(doc(1), [keyed(keys[1])])
    counts, n = store.key_frequencies()
    assert n == 3 and counts[:3].tolist() == [1, 2, 0]
    store.remove_document(a.document_id)
    counts, n = store.key_frequencies()
    assert n == 1 and counts[:3].tolist() == [0, 1, 0]
    with Store.open(store.path) as reader:
        counts, n = reader.key_frequencies()
        assert n == 1 and counts.sum() == 1


def test_hits_carry_their_documents_text_only_when_asked(make_store):
    store = make_store()
    keys = np.eye(DIM, dtype=np.float32)
    store.add_document(doc(0), [keyed(keys[0])])
    store.add_document(doc(1), [keyed(keys[1]), keyed(keys[2])])
    plain = store.search_many(keys[:2], 1)
    with_text = store.search_many(keys[:2], 1, with_text=True)
    assert [h[0].text for h in plain] == [None, None]
    assert [h[0].text for h in with_text] == [doc(0).text, doc(1).text]
    assert [(h[0].memory_id, h[0].source) for h in plain] == [(h[0].memory_id, h[0].source) for h in with_text]
