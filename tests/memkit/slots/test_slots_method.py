"""The slots method through the engine: memories stored and found by their keys, aggregated into a prefix;
top-k over the whole bank equals aggregating the bank; a removed document leaves retrieval and aggregation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from memkit.engine import Engine
from memkit.errors import ConfigError
from memkit.methods import build_method
from memkit.documents import SourceDocument
from storage import Store

TEXTS = ["Ada Varn lives in Port Elsin and keeps the lighthouse there.",
         "Tomas Brell draws maps in Kessin for the Sorrel Company.",
         "Mira Okonde leads the Harbour Trust of the northern coast."]
QUESTION = "Who leads the Harbour Trust?"


@pytest.fixture
def slot_dir(tiny_slot_dir):
    return tiny_slot_dir


def engine_for(lm, path, slot_dir, **options) -> Engine:
    method = build_method("slots", lm, {"model": str(slot_dir), "max_new_tokens": 4, **options})
    store = Store.create(path, model_id=lm.name, model_revision=None, model_fingerprint=lm.fingerprint,
                         method="slots", method_config=method.config_dict(), key_dim=method.key_dim)
    return Engine(lm, method, store)


def test_ask_aggregates_the_top_k_memories_into_a_prefix(tiny_lm, tmp_path, slot_dir):
    engine = engine_for(tiny_lm, tmp_path / "s", slot_dir, top_k=2)
    report = engine.ingest([SourceDocument(text=t, source=f"d{i}") for i, t in enumerate(TEXTS)])
    assert len(report.added) == 3
    answer = engine.ask(QUESTION)
    assert answer.notes.memories == 2 and len(answer.sources) == 2
    slots = engine.method.model.config.slots                      # the question and the slots, read for the key
    assert answer.usage.read_tokens == tiny_lm.count_tokens(QUESTION) + len(tiny_lm.bos_ids) + slots
    assert set(s.document_id for s in answer.sources) <= set(report.added)
    together = engine.ask_many([QUESTION, "Where does Ada Varn live?"], batch_size=2)
    assert together[0].text == answer.text                       # batched (with padding) equals alone
    engine.store.close()


def test_questions_read_together_get_the_keys_they_get_alone(tiny_lm, tmp_path, slot_dir):
    method = build_method("slots", tiny_lm, {"model": str(slot_dir), "batch_size": 2})
    questions = [QUESTION, "Where does Ada Varn live?", "Who draws maps in Kessin for the Sorrel Company?"]
    together = method.read_questions(questions)
    for question, read in zip(questions, together):
        np.testing.assert_allclose(read.key, method.query_key(question), rtol=1e-4, atol=1e-5)
        [alone] = method.read_questions([question])                   # its vectors, kept for the aggregation
        torch.testing.assert_close(read.state, alone.state, rtol=1e-4, atol=1e-5)


def test_top_k_over_the_whole_bank_equals_aggregating_all(tiny_lm, tmp_path, slot_dir):
    top = engine_for(tiny_lm, tmp_path / "top", slot_dir, top_k=3)
    every = engine_for(tiny_lm, tmp_path / "all", slot_dir, aggregation="all")
    for engine in (top, every):
        engine.ingest([SourceDocument(text=t, source=f"d{i}") for i, t in enumerate(TEXTS)])
    a = top.method.combine(QUESTION, top.retrieve(QUESTION, top.method.search_size(None)))
    b = every.method.combine(QUESTION, every.retrieve(QUESTION, every.method.search_size(None)))
    assert len(a.plan.memories) == len(b.plan.memories) == 3
    pa, pb = top.method.prefix([QUESTION], [a.plan]), every.method.prefix([QUESTION], [b.plan])
    for ka, kb in zip(pa.keys + pa.values, pb.keys + pb.values):
        torch.testing.assert_close(ka, kb, rtol=1e-5, atol=1e-6)
    assert top.ask(QUESTION).text == every.ask(QUESTION).text
    top.store.close()
    every.store.close()


def test_a_removed_document_leaves_retrieval_and_aggregation(tiny_lm, tmp_path, slot_dir):
    engine = engine_for(tiny_lm, tmp_path / "s", slot_dir, aggregation="all")
    report = engine.ingest([SourceDocument(text=t, source=f"d{i}") for i, t in enumerate(TEXTS)])
    assert engine.ask(QUESTION).notes.memories == 3
    engine.store.remove_document(report.added[2])
    answer = engine.ask(QUESTION)
    assert answer.notes.memories == 2 and report.added[2] not in {s.document_id for s in answer.sources}
    engine.store.close()


def test_options_and_models_are_checked(tiny_lm, slot_dir, tiny_model_dir):
    with pytest.raises(ConfigError, match="aggregation"):
        build_method("slots", tiny_lm, {"model": str(slot_dir), "aggregation": "some"})
    with pytest.raises(ConfigError, match="memkit train slots"):
        build_method("slots", tiny_lm, {})                     # the packaged one is for the world LM, or absent


def test_memories_are_stored_in_half_precision_unless_asked_otherwise(tiny_lm, tmp_path, slot_dir):
    from memkit.methods.slots import SLOTS

    half = engine_for(tiny_lm, tmp_path / "half", slot_dir)
    full = engine_for(tiny_lm, tmp_path / "full", slot_dir, payload_dtype="float32")
    docs = [SourceDocument(text=t, source=f"d{i}") for i, t in enumerate(TEXTS)]
    half.ingest(docs)
    full.ingest(docs)
    (hm,), (fm,) = half.store.memories(1), full.store.memories(1)
    got, want = half.store.load_payload(hm.id)[SLOTS], full.store.load_payload(fm.id)[SLOTS]
    assert got.dtype == np.float16 and want.dtype == np.float32 and 2 * got.nbytes == want.nbytes < fm.nbytes
    assert hm.nbytes < fm.nbytes
    np.testing.assert_allclose(got.astype(np.float32), want, rtol=1e-3, atol=1e-3)
    assert half.ask(QUESTION).sources[0].document_id == full.ask(QUESTION).sources[0].document_id
    with pytest.raises(ConfigError, match="payload_dtype"):
        build_method("slots", tiny_lm, {"model": str(slot_dir), "payload_dtype": "bfloat16"})
    half.store.close()
    full.store.close()
