"""Finding memories by keys fused with the database's BM25 (``fusion`` option), end to end through the engine and
a real store: the MiniLM keys with the full-text index, BM25 alone, and the refusals."""

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


def test_fused_retrieval_without_a_full_text_index_is_refused(tiny_lm, tmp_path):
    engine = _engine(tiny_lm, tmp_path, {"fusion": "rrf"})
    try:
        engine.store = _NoText(engine.store)
        with pytest.raises(ConfigError, match="fusion=rrf needs a store with a full-text index"):
            engine.retrieve("Who drew the map?", 2)
    finally:
        engine.store._inner.close()


def test_a_bad_fusion_option_is_refused_with_the_choices(tiny_lm):
    with pytest.raises(ConfigError, match="option fusion of method rag must be one of auto, dense, lexical, rrf, "
                                          "score, not 'bm25'"):
        build_method("rag", tiny_lm, {"fusion": "bm25"})


class _NoText:
    """A store as the engine's protocol allows it: nearest keys only."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        if name == "search_text_many":
            raise AttributeError(name)
        return getattr(self._inner, name)
