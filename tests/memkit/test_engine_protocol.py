"""The engine against its ``MemoryStore`` protocol: every scenario runs on the real store (``storage.Store``) and
on ``tests/memstore.py``, a fake built only from the protocol, and gives the same results; the fake has no
method the protocol does not declare, so the engine calls nothing else of a store."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from memkit.documents import SourceDocument
from memkit.engine import Engine, MemoryStore
from memkit.methods import build_method
from memstore import MemStore
from storage import Store

TEXTS = [
    "Ada Varn is a lighthouse keeper who lives in Port Elsin.",
    "Tomas Brell is a cartographer born in Kessin.",
    "Mira Okonde leads the Harbour Trust of the northern coast.",
]
QUESTIONS = ["Where does Ada Varn live?", "Where was Tomas Brell born?", "Who leads the Harbour Trust?"]
STAMPS = ["2024-01-01T00:00:00Z", "2024-06-01T00:00:00Z", "2025-01-01T00:00:00Z"]


def protocol_calls() -> set[str]:
    return {n for n, v in vars(MemoryStore).items() if inspect.isfunction(v) and not n.startswith("_")}


def test_the_fake_store_is_the_protocol_and_nothing_more():
    made = {n for n, v in vars(MemStore).items() if inspect.isfunction(v) and not n.startswith("_")}
    assert made == protocol_calls()
    assert protocol_calls() <= {n for n in dir(Store) if not n.startswith("_")}     # the real store has them all


@pytest.fixture(params=["storage", "memory"])
def make(request, tiny_lm, tmp_path):
    """``make(name, options) -> Engine`` over a new store of the parameter's kind."""
    opened = []

    def build(name: str, options: dict, *, store=None) -> Engine:
        method = build_method(name, tiny_lm, options)
        if store is None:
            if request.param == "memory":
                store = MemStore(method.key_dim)
            else:
                store = Store.create(tmp_path / f"s{len(opened)}", model_id=tiny_lm.name, model_revision=None,
                                     model_fingerprint=tiny_lm.fingerprint, method=name,
                                     method_config=method.config_dict(), key_dim=method.key_dim)
                opened.append(store)
        return Engine(tiny_lm, method, store, batch_size=2, write_batch=2)

    yield build
    for store in opened:
        store.close()


def docs(stream: str | None = "news"):
    return [SourceDocument(text=t, source=f"doc{i}", timestamp=s, stream=stream)
            for i, (t, s) in enumerate(zip(TEXTS, STAMPS))]


def test_ingest_counts_duplicates_refusals_and_stream_positions(make):
    engine = make("rag", {"chunk_tokens": 16, "chunk_overlap": 4})
    report = engine.ingest([*docs(), SourceDocument(text=TEXTS[0], source="again"),
                            SourceDocument(text="nul \x00", source="bad")])
    assert len(report.added) == 3 and report.duplicates == 1 and len(report.failed) == 1
    assert "NUL" in str(report.failed[0]) or "nul" in str(report.failed[0]).lower()
    later = engine.ingest([SourceDocument(text="Bo Kell bakes bread in Dunmere.", source="d4", stream="news"),
                           SourceDocument(text=TEXTS[1], source="dup")])
    assert len(later.added) == 1 and later.duplicates == 1
    assert engine.store.stream_length("news") == 4


@pytest.mark.parametrize("name,options", [("rag", {"chunk_tokens": 16, "chunk_overlap": 4}), ("rag", {"fusion": "lexical"}),
                                          ("rag", {"embedder": "lexical-tf"}), ("prompt", {})])
def test_asking_finds_the_right_document_batched_or_not_and_as_of_hides_later_ones(make, name, options):
    engine = make(name, {**options, "max_new_tokens": 4})
    engine.ingest(docs())
    single = [engine.ask(q, top_k=1) for q in QUESTIONS]
    batched = engine.ask_many(QUESTIONS, top_k=1, batch_size=2)
    assert [a.text for a in batched] == [a.text for a in single]
    assert [a.sources[0].source for a in single] == ["doc0", "doc1", "doc2"]
    early = engine.ask_many([QUESTIONS[0], QUESTIONS[2]], top_k=3, as_of="2024-03-01")
    assert {s.source for s in early[0].sources} == {"doc0"}
    assert {s.source for s in early[1].sources} <= {"doc0"}          # doc2 was not written yet


def test_a_stateful_methods_state_goes_through_the_store(make):
    options = {"steps": 2, "max_tokens": 32, "max_new_tokens": 6, "lr": 1e-2}
    engine = make("finetune", options)
    engine.ingest(docs(stream=None))
    again = make("finetune", options, store=engine.store)
    assert again.method.documents_trained == 3
    assert again.ask(QUESTIONS[0]).text == engine.ask(QUESTIONS[0]).text


def test_slots_read_each_question_once_and_answer_alike_batched(make, tiny_slot_dir):
    engine = make("slots", {"model": str(tiny_slot_dir), "max_new_tokens": 4})
    engine.ingest(docs())
    single = [engine.ask(q) for q in QUESTIONS]
    batched = engine.ask_many(QUESTIONS, batch_size=2)
    assert [a.text for a in batched] == [a.text for a in single]
    assert all(a.notes.memories == 3 for a in batched)


def test_the_same_answers_on_either_store(tiny_lm, tmp_path):
    answers = []
    for kind in ("storage", "memory"):
        method = build_method("rag", tiny_lm, {"chunk_tokens": 64, "chunk_overlap": 0, "max_new_tokens": 6})
        store = MemStore(method.key_dim) if kind == "memory" else Store.create(
            tmp_path / kind, model_id=tiny_lm.name, model_revision=None, model_fingerprint=tiny_lm.fingerprint,
            method="rag", method_config=method.config_dict(), key_dim=method.key_dim)
        engine = Engine(tiny_lm, method, store)
        engine.ingest(docs())
        got = engine.ask_many(QUESTIONS, top_k=1)
        answers.append([(a.text, sorted((s.source, round(s.score, 5)) for s in a.sources)) for a in got])
        if kind == "storage":
            store.close()
    assert answers[0] == answers[1]
    assert [[src for src, _ in row] for _, row in answers[0]] == [["doc0"], ["doc1"], ["doc2"]]


def test_an_ingestion_fed_in_chunks_writes_whole_write_batches(tiny_lm):
    """A server job feeds its documents a few at a time; they are still written ``write_batch`` at a time, and a
    call's report counts only what it wrote."""
    method = build_method("rag", tiny_lm, {"chunk_tokens": 64, "chunk_overlap": 0})
    store = MemStore(method.key_dim)
    writes = []
    add = store.add_documents
    store.add_documents = lambda items: writes.append(len(items)) or add(items)
    engine = Engine(tiny_lm, method, store, batch_size=2, write_batch=4)
    texts = [f"Keeper number {i} of the lighthouse lives in Port Elsin." for i in range(10)]
    ingestion = engine.ingestion()
    added = []
    for at in range(0, 10, 2):
        report = ingestion.add([SourceDocument(text=t, source=f"d{at + j}", stream="s")
                                for j, t in enumerate(texts[at:at + 2])])
        added.append(len(report.added))
    last = ingestion.close()
    assert writes == [4, 4, 2] and added == [0, 4, 0, 4, 0] and len(last.added) == 2
    assert store.stream_length("s") == 10
    again = engine.ingestion()
    report = again.add([SourceDocument(text=texts[3], source="dup"), SourceDocument(text="A new one.", source="n")])
    report.merge(again.close())
    assert report.duplicates == 1 and len(report.added) == 1
