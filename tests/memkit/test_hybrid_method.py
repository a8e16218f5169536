"""The hybrid method: one record per document carrying both an adapter state and memory vectors; a question's
answer is generated with the adapter method's merged delta and the slots method's aggregated prefix, both from
the same retrieved documents."""

from __future__ import annotations

import numpy as np
import pytest

from memkit.engine import Engine
from memkit.errors import ConfigError
from memkit.methods import build_method
from memkit.methods.slots import SLOTS
from memkit.prompts import STOP, qa_prompt
from memkit.documents import SourceDocument
from storage import Store

TEXTS = ["Ada Varn lives in Port Elsin and keeps the lighthouse there.",
         "Tomas Brell draws maps in Kessin for the Sorrel Company.",
         "Mira Okonde leads the Harbour Trust of the northern coast."]
QUESTION = "Who leads the Harbour Trust?"


def engine_for(lm, path, generator_dir, slot_dir, **options) -> Engine:
    method = build_method("hybrid", lm, {"generator": str(generator_dir), "model": str(slot_dir), "chunk_tokens": 16,
                                         "max_new_tokens": 6, **options})
    store = Store.create(path, model_id=lm.name, model_revision=None, model_fingerprint=lm.fingerprint,
                         method="hybrid", method_config=method.config_dict(), key_dim=method.key_dim)
    return Engine(lm, method, store)


def test_a_document_is_one_record_with_both_memories(tiny_lm, tiny_generator_dir, tiny_slot_dir):
    hybrid = build_method("hybrid", tiny_lm, {"generator": str(tiny_generator_dir), "model": str(tiny_slot_dir),
                                              "chunk_tokens": 16})
    [[record]] = hybrid.encode(TEXTS[:1])
    [[alone]] = hybrid.adapter.encode(TEXTS[:1])
    [[slots]] = hybrid.slots.encode(TEXTS[:1])
    assert record.kind == "hybrid"
    assert set(record.tensors) == set(alone.tensors) | {SLOTS}
    np.testing.assert_allclose(record.tensors[SLOTS], slots.tensors[SLOTS], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(record.key, slots.key, rtol=1e-5, atol=1e-6)       # keys=slots by default
    lexical = build_method("hybrid", tiny_lm, {"generator": str(tiny_generator_dir), "model": str(tiny_slot_dir),
                                               "chunk_tokens": 16, "keys": "lexical"})
    [[record]] = lexical.encode(TEXTS[:1])
    assert lexical.key_dim == lexical.adapter.key_dim != hybrid.key_dim
    np.testing.assert_allclose(record.key, alone.key, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("keys", ["slots", "lexical"])
def test_the_answer_reads_the_merged_delta_and_the_slot_prefix_together(tiny_lm, tmp_path, tiny_generator_dir,
                                                                         tiny_slot_dir, keys):
    engine = engine_for(tiny_lm, tmp_path / keys, tiny_generator_dir, tiny_slot_dir, top_n=2, top_k=2, keys=keys,
                        min_weight=0.0, temperature=10.0)
    report = engine.ingest([SourceDocument(text=t, source=f"d{i}") for i, t in enumerate(TEXTS)])
    method = engine.method
    retrieved = engine.retrieve(QUESTION, method.search_size(None))
    context = method.combine(QUESTION, retrieved)
    a, s = context.plan.adapter, context.plan.slots
    assert a.merged == 2 and len(s.memories) == 2
    assert {x.document_id for x in context.sources} <= set(report.added)
    expected = tiny_lm.generate([qa_prompt(QUESTION, [])], max_new_tokens=6, stop=STOP,
                                delta=method.adapter.delta([a]), prefix=method.slots.prefix([QUESTION], [s]))[0].strip()
    only_delta = tiny_lm.generate([qa_prompt(QUESTION, [])], max_new_tokens=6, stop=STOP,
                                  delta=method.adapter.delta([a]))[0].strip()
    answer = engine.ask(QUESTION)
    assert answer.text == expected
    assert answer.notes.merged_documents == 2 and answer.notes.memories == 2
    assert engine.ask_many([QUESTION, "Where does Ada Varn live?"], batch_size=2)[0].text == answer.text
    only_prefix = tiny_lm.generate([qa_prompt(QUESTION, [])], max_new_tokens=6, stop=STOP,
                                   prefix=method.slots.prefix([QUESTION], [s]))[0].strip()
    assert expected != only_delta and expected != only_prefix, "both the delta and the prefix shape the answer"
    engine.store.close()


def test_a_removed_document_leaves_both_parts(tiny_lm, tmp_path, tiny_generator_dir, tiny_slot_dir):
    engine = engine_for(tiny_lm, tmp_path / "h", tiny_generator_dir, tiny_slot_dir, aggregation="all", top_n=3,
                        min_weight=0.0, temperature=10.0)
    report = engine.ingest([SourceDocument(text=t, source=f"d{i}") for i, t in enumerate(TEXTS)])
    answer = engine.ask(QUESTION)
    assert answer.notes.memories == 3 and answer.notes.merged_documents == 3
    engine.store.remove_document(report.added[2])
    answer = engine.ask(QUESTION)
    assert answer.notes.memories == 2 and answer.notes.merged_documents == 2
    assert report.added[2] not in {s.document_id for s in answer.sources}
    engine.store.close()


def test_options_are_checked(tiny_lm, tiny_generator_dir, tiny_slot_dir):
    base = {"generator": str(tiny_generator_dir), "model": str(tiny_slot_dir)}
    with pytest.raises(ConfigError, match="option keys"):
        build_method("hybrid", tiny_lm, {**base, "keys": "both"})
    with pytest.raises(ConfigError, match="aggregation"):
        build_method("hybrid", tiny_lm, {**base, "aggregation": "some"})
    with pytest.raises(ConfigError, match="merge"):
        build_method("hybrid", tiny_lm, {**base, "merge": "mean"})
    with pytest.raises(ConfigError, match="another base model"):
        build_method("hybrid", tiny_lm, {"generator": str(tiny_generator_dir)})    # the packaged slots: world LM's
