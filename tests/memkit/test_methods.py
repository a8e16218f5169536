"""Every method, from one table of cases: the Method protocol, its records, its answers and its sources."""

from __future__ import annotations

import numpy as np
import pytest

from memkit.engine import Engine
from memkit.errors import ConfigError, InputError
from memkit.methods import METHODS, Method, build_method
from memkit.documents import SourceDocument
from storage import Store

CASES = [
    ("closed_book", {}, None),
    ("prompt", {}, "doc"),
    ("rag", {"chunk_tokens": 16, "chunk_overlap": 4}, "chunk"),
    ("finetune", {"steps": 1, "max_tokens": 32, "max_new_tokens": 8}, None),   # keeps keyless "doc" records
    ("adapter", {"generator": "TINY", "chunk_tokens": 16, "top_n": 2}, "adapter"),
    ("slots", {"model": "TINY_SLOTS", "top_k": 2, "max_new_tokens": 8}, "slots"),
    ("hybrid", {"generator": "TINY", "model": "TINY_SLOTS", "chunk_tokens": 16, "top_n": 2, "top_k": 2,
                "max_new_tokens": 8}, "hybrid"),
]
TEXTS = [
    "Ada Varn is a lighthouse keeper who lives in Port Elsin and works for the Harbour Trust.",
    "Tomas Brell is a cartographer born in Kessin who drew the first map of the Sorrel delta.",
    "Mira Okonde leads the Harbour Trust, which runs the lighthouses of the northern coast.",
]


def test_table_covers_every_method():
    assert {name for name, _, _ in CASES} == set(METHODS)


@pytest.fixture
def resolved(tiny_generator_dir, tiny_slot_dir):
    """The options of a case with "TINY" ("TINY_SLOTS") replaced by the tiny generator's (slot model's)
    directory."""
    dirs = {"TINY": str(tiny_generator_dir), "TINY_SLOTS": str(tiny_slot_dir)}
    return lambda options: {k: dirs.get(v, v) if isinstance(v, str) else v for k, v in options.items()}


def make_engine(lm, tmp_path, name, options) -> Engine:
    method = build_method(name, lm, options)
    store = Store.create(tmp_path / name, model_id=lm.name, model_revision=None, model_fingerprint=lm.fingerprint,
                         method=name, method_config=method.config_dict(), key_dim=method.key_dim)
    return Engine(lm, method, store)


@pytest.mark.parametrize("name,options,kind", CASES)
def test_protocol_and_config_round_trip(tiny_lm, name, options, kind, resolved):
    options = resolved(options)
    method = build_method(name, tiny_lm, options)
    assert isinstance(method, Method)
    again = build_method(name, tiny_lm, method.config_dict())
    assert again.config_dict() == method.config_dict()
    for key, value in options.items():
        assert method.config_dict()[key] == value


@pytest.mark.parametrize("name,options,kind", CASES)
def test_records_have_unit_keys_of_the_declared_size(tiny_lm, name, options, kind, resolved):
    method = build_method(name, tiny_lm, resolved(options))
    encoded = method.encode(TEXTS)
    assert len(encoded) == len(TEXTS)
    for text, records in zip(TEXTS, encoded):
        if kind is None:
            assert all(r.key is None for r in records), "a method that never searches makes no keys"
            continue
        assert records and {r.kind for r in records} == {kind}
        for r in records:
            assert r.key.dtype == np.float32 and r.key.shape == (method.key_dim,)
            assert abs(float(np.linalg.norm(r.key)) - 1.0) < 1e-4
            if r.span is not None:
                assert 0 <= r.span[0] < r.span[1] <= len(text)


@pytest.mark.parametrize("name,options,kind", CASES)
def test_ingest_then_ask_cites_stored_documents(tiny_lm, tmp_path, name, options, kind, resolved):
    engine = make_engine(tiny_lm, tmp_path, name, resolved(options))
    report = engine.ingest([SourceDocument(text=t, source=f"doc{i}") for i, t in enumerate(TEXTS)])
    assert len(report.added) == 3
    first = engine.ask("Who leads the Harbour Trust?")
    second = engine.ask("Who leads the Harbour Trust?")
    assert first.text == second.text, "answers are deterministic"
    assert first.method == name and first.timings["total"] > 0
    if kind is None:
        assert first.sources == []
    else:
        assert first.sources and {s.document_id for s in first.sources} <= set(report.added)
        assert {s.kind for s in first.sources} == {kind}
        scores = [s.score for s in first.sources]
        assert scores == sorted(scores, reverse=True)
    engine.store.close()


@pytest.mark.parametrize("name,options", [("prompt", {}), ("rag", {"chunk_tokens": 128, "chunk_overlap": 0})])
def test_a_passage_identical_to_the_question_is_found_first(tiny_lm, tmp_path, name, options):
    engine = make_engine(tiny_lm, tmp_path, name, options)
    report = engine.ingest([SourceDocument(text=t, source=f"doc{i}") for i, t in enumerate(TEXTS)])
    answer = engine.ask(TEXTS[1], top_k=1)
    assert answer.sources[0].document_id == report.added[1]
    assert answer.sources[0].score == pytest.approx(1.0, abs=1e-4)
    engine.store.close()


def test_prompt_cuts_a_document_longer_than_the_window(tiny_lm, tmp_path):
    engine = make_engine(tiny_lm, tmp_path, "prompt", {})
    long_text = " ".join(f"fact{i} is about the harbour." for i in range(400))
    engine.ingest([SourceDocument(text=long_text, source="long")])
    answer = engine.ask("What is fact3 about?")
    assert answer.notes.truncated is True
    assert answer.usage.prompt_tokens + len(tiny_lm.bos_ids) + 32 <= tiny_lm.max_context
    assert tiny_lm.last_truncated == [False], "the method fits the prompt; the LM never has to cut it"
    engine.store.close()


def test_duplicates_and_stream_positions(tiny_lm, tmp_path):
    engine = make_engine(tiny_lm, tmp_path, "rag", {"chunk_tokens": 16, "chunk_overlap": 4})
    docs = [SourceDocument(text=t, source="s", stream="news") for t in TEXTS + TEXTS[:1]]
    report = engine.ingest(docs)
    assert len(report.added) == 3 and report.duplicates == 1
    report = engine.ingest([SourceDocument(text="A later piece of news.", source="s", stream="news"),
                            SourceDocument(text=TEXTS[2], source="s", stream="news")])
    assert len(report.added) == 1 and report.duplicates == 1
    positions = [d.position for d in engine.store.list_documents(stream="news")]
    assert positions == [0, 1, 2, 3]
    engine.store.close()


def test_empty_question_and_bad_options_are_clear(tiny_lm, tmp_path):
    engine = make_engine(tiny_lm, tmp_path, "closed_book", {})
    with pytest.raises(InputError, match="empty"):
        engine.ask("   ")
    with pytest.raises(ConfigError, match="chunk_tokens"):
        build_method("rag", tiny_lm, {"chunk_tokens": 100_000})
    with pytest.raises(ConfigError, match="unknown option 'top'"):
        build_method("rag", tiny_lm, {"top": 3})
    engine.store.close()


def test_rag_with_a_separate_encoder_model(tiny_lm, tmp_path, tiny_tokenizer):
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=len(tiny_tokenizer), hidden_size=24, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=48, max_position_embeddings=128, pad_token_id=2)
    encoder_dir = tmp_path / "encoder"
    BertModel(config).save_pretrained(encoder_dir)
    tiny_tokenizer.save_pretrained(encoder_dir)
    engine = make_engine(tiny_lm, tmp_path, "rag", {"embedder": str(encoder_dir), "chunk_tokens": 32})
    assert engine.method.key_dim == 24
    report = engine.ingest([SourceDocument(text=t, source=f"d{i}") for i, t in enumerate(TEXTS)])
    answer = engine.ask(TEXTS[0][:60], top_k=2)
    assert answer.sources and {s.document_id for s in answer.sources} <= set(report.added)
    engine.store.close()
