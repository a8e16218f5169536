"""The adapter method through the engine and the CLI: states stored, retrieved, merged, applied, exported."""

from __future__ import annotations

import pytest
import torch

from memkit.adapters.encode import encode_documents
from memkit.adapters.generator import AdapterGenerator
from memkit.adapters.state import AdapterState
from memkit.engine import Engine
from memkit.errors import ConfigError
from memkit.methods import build_method
from memkit.documents import SourceDocument
from storage import Store

TEXTS = ["Ada Varn lives in Port Elsin and keeps the lighthouse there.",
         "Tomas Brell draws maps in Kessin for the Sorrel Company.",
         "Mira Okonde leads the Harbour Trust of the northern coast."]


def engine_for(lm, tmp_path, generator_dir, **options) -> Engine:
    method = build_method("adapter", lm, {"generator": str(generator_dir), "chunk_tokens": 16, **options})
    store = Store.create(tmp_path / "store", model_id=lm.name, model_revision=None, model_fingerprint=lm.fingerprint,
                         method="adapter", method_config=method.config_dict(), key_dim=method.key_dim)
    return Engine(lm, method, store)


def test_ask_merges_the_states_of_the_retrieved_documents(tiny_lm, tmp_path, tiny_generator_dir):
    engine = engine_for(tiny_lm, tmp_path, tiny_generator_dir, top_n=2, merge="sum")
    report = engine.ingest([SourceDocument(text=t, source=f"d{i}") for i, t in enumerate(TEXTS)])
    question = "Where does Ada Varn keep the lighthouse?"
    answer = engine.ask(question)
    assert answer.notes.merged_documents == 2 and len(answer.sources) == 2
    assert answer.sources[0].document_id == report.added[0]      # lexical keys find the shared words
    # the merged state is exactly the sum of the two documents' own states
    gen = AdapterGenerator.load(tiny_generator_dir, tiny_lm)
    cited = [TEXTS[report.added.index(s.document_id)] for s in answer.sources]
    with torch.no_grad():
        expected = AdapterState.total(encode_documents(tiny_lm, gen, cited, chunk_tokens=16))
        expected_answer = tiny_lm.generate([f"Question: {question}\nAnswer:"], max_new_tokens=32, stop=["\n"],
                                           delta=gen.delta(expected))[0].strip()
    assert answer.text == expected_answer
    engine.store.close()


def test_score_merge_weighs_unit_states_by_retrieval_score_and_drops_faint_matches(tiny_lm, tmp_path,
                                                                                  tiny_generator_dir):
    engine = engine_for(tiny_lm, tmp_path, tiny_generator_dir, top_n=3, merge="score", temperature=0.05,
                        min_weight=0.0)
    engine.ingest([SourceDocument(text=t, source=f"d{i}") for i, t in enumerate(TEXTS)])
    method = engine.method
    retrieved = engine.retrieve("Where does Ada Varn keep the lighthouse of Port Elsin?", 3)
    scores = [r.score for r in retrieved]
    weights = method.merge_weights(scores)
    assert abs(sum(weights) - 1) < 1e-9 and weights == sorted(weights, reverse=True) and weights[0] > 0.5
    context = method.combine("q", retrieved)
    assert context.plan.merged == 3 and context.plan.basis is None
    for name, got in context.plan.state.mats.items():
        want = 0
        for r, w in zip(retrieved, weights):
            m = AdapterState.from_arrays({k: a for k, a in r.payload.items() if not k.startswith("svd_")}).mats[name]
            want = want + w * m / m.norm()
        torch.testing.assert_close(got, want)
    # with a floor on the weights only the clear best match is left: answered from its own stored basis
    method.config.min_weight = 0.49
    alone = method.combine("q", retrieved)
    assert alone.plan.merged == 1 and alone.plan.basis is not None
    assert [s.document_id for s in alone.sources] == [retrieved[0].document_id]
    again = engine.retrieve("Where does Ada Varn keep the lighthouse of Port Elsin?", 3)
    assert [r.payload is not None for r in again] == [True, False, False]   # unmerged states are never read
    answer = engine.ask("Where does Ada Varn keep the lighthouse of Port Elsin?")
    assert [s.weight for s in answer.sources] == [1.0] and len(answer.sources) == 1
    # the best match keeps its weight whatever the floor; "sum" weighs every document 1
    assert method.merge_weights([0.3, 0.3])[0] == 0.5
    method.config.merge = "sum"
    assert method.merge_weights(scores) == [1.0, 1.0, 1.0]
    engine.store.close()


def test_batched_answers_equal_one_at_a_time(tiny_lm, tmp_path, tiny_generator_dir):
    engine = engine_for(tiny_lm, tmp_path, tiny_generator_dir, top_n=1)
    engine.ingest([SourceDocument(text=t, source=f"d{i}") for i, t in enumerate(TEXTS)])
    questions = ["Who leads the Harbour Trust?", "Where does Tomas Brell draw maps?", "Who keeps the lighthouse?"]
    together = engine.ask_many(questions, batch_size=3)
    alone = [engine.ask(q) for q in questions]
    assert [a.text for a in together] == [a.text for a in alone]
    assert [[s.document_id for s in a.sources] for a in together] == [[s.document_id for s in a.sources] for a in alone]
    engine.store.close()


def test_a_removed_document_is_no_longer_merged(tiny_lm, tmp_path, tiny_generator_dir):
    engine = engine_for(tiny_lm, tmp_path, tiny_generator_dir, top_n=3, merge="sum")
    report = engine.ingest([SourceDocument(text=t, source=f"d{i}") for i, t in enumerate(TEXTS)])
    assert engine.ask("Who leads the Harbour Trust?").notes.merged_documents == 3
    engine.store.close()
    store = Store.open(tmp_path / "store", write=True)
    store.remove_document(report.added[2])
    engine = Engine(tiny_lm, engine.method, store)
    answer = engine.ask("Who leads the Harbour Trust?")
    assert answer.notes.merged_documents == 2 and report.added[2] not in {s.document_id for s in answer.sources}
    store.close()


def test_the_packaged_generator_refuses_another_model(tiny_lm):
    with pytest.raises(ConfigError, match="memkit train adapter"):
        build_method("adapter", tiny_lm, {})
    with pytest.raises(ConfigError, match="mode"):
        build_method("adapter", tiny_lm, {"mode": "both"})
    for bad in ({"merge": "max"}, {"temperature": "0"}, {"min_weight": "1"}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            build_method("adapter", tiny_lm, {"generator": "x", **bad})


def test_a_single_documents_stored_basis_gives_the_delta_of_its_state(tiny_lm, tmp_path, tiny_generator_dir):
    engine = engine_for(tiny_lm, tmp_path, tiny_generator_dir, top_n=1, merge="sum", payload_dtype="float32")
    report = engine.ingest([SourceDocument(text=t, source=f"d{i}") for i, t in enumerate(TEXTS)])
    method = engine.method
    one = engine.retrieve("Who leads the Harbour Trust?", 1)
    two = engine.retrieve("Where does Tomas Brell draw maps for the Sorrel Company?", 2)
    contexts = [method.combine("q1", one), method.combine("q2", two, top_k=2)]
    assert contexts[0].plan.basis is not None and contexts[1].plan.basis is None
    gen = method.generator
    got = method.delta([c.plan for c in contexts])          # one stored basis and one SVD, in one batch
    with torch.no_grad():
        want = gen.delta(AdapterState.stack([c.plan.state for c in contexts]))
    assert report.added and set(got.factors) == set(want.factors)
    for name, (a, b) in want.factors.items():
        # the applied update B A is what matters (singular vectors are defined up to sign)
        torch.testing.assert_close(got.factors[name][1] @ got.factors[name][0], b @ a, rtol=1e-4, atol=1e-5)
    engine.store.close()


def test_states_are_stored_in_half_precision_by_default_and_read_back_as_float32(tiny_lm, tmp_path,
                                                                                   tiny_generator_dir):
    half = engine_for(tiny_lm, tmp_path / "half", tiny_generator_dir, top_n=1)
    full = engine_for(tiny_lm, tmp_path / "full", tiny_generator_dir, top_n=1, payload_dtype="float32")
    assert half.method.config.payload_dtype == "float16"
    docs = [SourceDocument(text=t, source=f"d{i}") for i, t in enumerate(TEXTS)]
    half.ingest(docs)
    full.ingest(docs)
    (hm,), (fm,) = half.store.memories(1), full.store.memories(1)
    stored_half, stored_full = half.store.load_payload(hm.id), full.store.load_payload(fm.id)
    floats = [k for k, a in stored_full.items() if a.dtype == "float32"]
    assert floats and all(stored_half[k].dtype == "float16" for k in floats)
    assert stored_half["__tokens__"].dtype == "int64"                 # counts stay integers
    assert hm.nbytes < 0.6 * fm.nbytes
    question = "Who leads the Harbour Trust?"
    got = half.method.delta([half.method.combine(question, half.retrieve(question, 1)).plan])
    want = full.method.delta([full.method.combine(question, full.retrieve(question, 1)).plan])
    for name, (a, b) in want.factors.items():
        assert got.factors[name][0].dtype == torch.float32
        torch.testing.assert_close(got.factors[name][1] @ got.factors[name][0], b @ a, rtol=2e-2, atol=2e-3)
    with pytest.raises(ConfigError, match="payload_dtype"):
        build_method("adapter", tiny_lm, {"generator": str(tiny_generator_dir), "payload_dtype": "int8"})
    half.store.close()
    full.store.close()
