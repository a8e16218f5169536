"""Finding memories by keys fused with the database's BM25 (``fusion`` option), end to end through the engine and
a real store: the MiniLM keys with the full-text index, BM25 alone, the hybrid's fusion, and the refusals."""

from __future__ import annotations

import pytest

from memkit.documents import SourceDocument
from memkit.engine import Engine
from memkit.errors import ConfigError
from memkit.methods import build_method
from storage import Store

DOCS = [
    "The Harbour Trust repaired the old lighthouse on Gull Point after the winter storms.",
    "Tomas Brell drew the first map of the Sorrel delta, marking every channel and sandbank.",
    "Mira Okonde leads the orchestra of Varnhold and plays the cello on feast days.",
    "A recipe for barley bread: flour, water, salt and a long slow rise overnight.",
    "The railway from Kessel to Dunmere opened in spring; its engines burn peat.",
]


def _engine(tiny_lm, tmp_path, options: dict):
    method = build_method("rag", tiny_lm, options)
    store = Store.create(tmp_path / "store", model_id=tiny_lm.name, model_revision=None,
                         model_fingerprint=tiny_lm.fingerprint, method="rag",
                         method_config=method.config_dict(), key_dim=method.key_dim)
    engine = Engine(tiny_lm, method, store)
    engine.ingest([SourceDocument(text=t, source=f"doc{i}") for i, t in enumerate(DOCS)])
    return engine


@pytest.mark.parametrize("options", [{"embedder": "minilm"}, {"embedder": "minilm", "fusion": "rrf"},
                                     {"fusion": "lexical"}, {"embedder": "minilm", "fusion": "dense"}])
def test_each_way_of_finding_memories_finds_the_document_a_question_is_about(tiny_lm, tmp_path, options):
    engine = _engine(tiny_lm, tmp_path, options)
    try:
        for question, want in (("Who drew a map of the Sorrel delta?", "doc1"),
                               ("Which railway engines burn peat?", "doc4"),
                               ("Who repaired the lighthouse on Gull Point?", "doc0")):
            hits = engine.retrieve(question, 2)
            assert hits[0].source == want, (options, question, [h.source for h in hits])
            assert 0 < hits[0].score <= 1.0 + 1e-6 and hits[0].score >= hits[-1].score
    finally:
        engine.store.close()


def test_auto_fuses_minilm_keys_and_keeps_lexical_keys_alone(tiny_lm):
    assert build_method("rag", tiny_lm, {"embedder": "minilm"}).fusion.mode == "score"
    assert build_method("rag", tiny_lm, {}).fusion is None
    assert build_method("prompt", tiny_lm, {"fusion": "lexical"}).fusion.mode == "lexical"


def test_a_bad_fusion_option_is_refused_with_the_choices(tiny_lm):
    with pytest.raises(ConfigError, match="option fusion of method rag must be one of auto, dense, lexical, rrf, "
                                          "score, not 'bm25'"):
        build_method("rag", tiny_lm, {"fusion": "bm25"})


@pytest.mark.parametrize("keys", ["slots", "lexical"])
def test_the_hybrids_fusion_option_reaches_the_engine(tiny_lm, tmp_path, tiny_generator_dir, tiny_slot_dir, keys):
    """``-o fusion=lexical`` on a hybrid store finds memories by the database's BM25 alone, whichever key the
    documents are found by (it was validated and then ignored)."""
    options = {"generator": str(tiny_generator_dir), "model": str(tiny_slot_dir), "chunk_tokens": 16,
               "keys": keys, "fusion": "lexical"}
    method = build_method("hybrid", tiny_lm, options)
    assert method.fusion is not None and method.fusion.mode == "lexical"
    assert build_method("hybrid", tiny_lm, {**options, "fusion": "auto"}).fusion is None
    store = Store.create(tmp_path / "store", model_id=tiny_lm.name, model_revision=None,
                         model_fingerprint=tiny_lm.fingerprint, method="hybrid",
                         method_config=method.config_dict(), key_dim=method.key_dim)
    engine = Engine(tiny_lm, method, store)
    try:
        assert engine.abilities.fusion is method.fusion
        engine.ingest([SourceDocument(text=t, source=f"doc{i}") for i, t in enumerate(DOCS)])
        for question, want in (("Who drew a map of the Sorrel delta?", "doc1"),
                               ("Which railway engines burn peat?", "doc4")):
            hits = engine.retrieve(question, 2)
            assert hits[0].source == want and hits[0].score == pytest.approx(1.0), [h.source for h in hits]
    finally:
        store.close()
