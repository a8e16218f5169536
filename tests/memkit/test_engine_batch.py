"""``Engine.ask_many``: batched answers equal one-at-a-time answers; given memories replace the search."""

from __future__ import annotations

import pytest

from memkit.engine import Engine
from memkit.errors import InputError
from memkit.methods import Retrieved, build_method
from memkit.documents import SourceDocument
from storage import Store


TEXTS = [
    "Ada Varn is a lighthouse keeper who lives in Port Elsin.",
    "Tomas Brell is a cartographer born in Kessin.",
    "Mira Okonde leads the Harbour Trust of the northern coast.",
]
QUESTIONS = ["Where does Ada Varn live?", "Where was Tomas Brell born?", "Who leads the Harbour Trust?"]


def make_engine(lm, path, name, options) -> Engine:
    method = build_method(name, lm, options)
    store = Store.create(path, model_id=lm.name, model_revision=None, model_fingerprint=lm.fingerprint,
                         method=name, method_config=method.config_dict(), key_dim=method.key_dim)
    engine = Engine(lm, method, store)
    engine.ingest([SourceDocument(text=t, source=f"doc{i}") for i, t in enumerate(TEXTS)])
    return engine


@pytest.mark.parametrize("name,options", [("closed_book", {}), ("prompt", {}),
                                          ("rag", {"chunk_tokens": 16, "chunk_overlap": 4})])
def test_ask_many_equals_ask(tiny_lm, tmp_path, name, options):
    engine = make_engine(tiny_lm, tmp_path / name, name, dict(options, max_new_tokens=8))
    single = [engine.ask(q) for q in QUESTIONS]
    batched = engine.ask_many(QUESTIONS, batch_size=2)
    assert [a.text for a in batched] == [a.text for a in single]
    assert [[s.document_id for s in a.sources] for a in batched] == [[s.document_id for s in a.sources] for a in single]
    for a in batched:
        assert a.timings["total"] >= a.timings["generate"] > 0
        assert a.usage.prompt_tokens > 0 and 1 <= a.usage.generated_tokens <= 8
    engine.store.close()


def test_given_memories_replace_the_search(tiny_lm, tmp_path):
    engine = make_engine(tiny_lm, tmp_path / "p", "prompt", {"max_new_tokens": 4})
    doc_ids = [d.id for d in engine.store.list_documents()]
    given = [[Retrieved(memory_id=-1, document_id=doc_ids[2], score=1.0, kind="doc", source="x", span=None,
                        text=TEXTS[2])]]
    (answer,) = engine.ask_many(["Who leads the Harbour Trust?"], retrieved=given)
    assert [s.document_id for s in answer.sources] == [doc_ids[2]]
    with pytest.raises(InputError, match="2 lists"):
        engine.ask_many(["a?"], retrieved=given * 2)
    with pytest.raises(InputError, match="empty"):
        engine.ask_many(["  "])
    engine.store.close()


def test_passages_go_into_the_prompt_by_rising_score_ties_in_order(tiny_lm):
    from memkit.methods.common import TextAnswerer

    def hit(text, score):
        return Retrieved(memory_id=-1, document_id=len(text), score=score, kind="doc", source=text, span=None,
                         text=text)

    answerer = TextAnswerer(tiny_lm, max_new_tokens=4)
    context = answerer.context("q?", [hit("middle one", 0.5), hit("best one", 0.9), hit("worst one", 0.1)], 8)
    assert context.passages == ["worst one", "middle one", "best one"]
    assert [s.score for s in context.sources] == [0.9, 0.5, 0.1]       # sources stay best first
    tied = answerer.context("q?", [hit("first gold", 1.0), hit("second gold", 1.0)], 8)
    assert tied.passages == ["first gold", "second gold"]


@pytest.mark.parametrize("embedder,found", [("lexical", "beta wend"), ("lexical-tf", "alpha")])
def test_the_engine_weighs_lexical_queries_by_the_stores_document_frequencies(tiny_lm, tmp_path, embedder, found):
    method = build_method("rag", tiny_lm, {"embedder": embedder, "chunk_tokens": 16, "chunk_overlap": 4})
    store = Store.create(tmp_path / "s", model_id=tiny_lm.name, model_revision=None,
                         model_fingerprint=tiny_lm.fingerprint, method="rag", method_config=method.config_dict(),
                         key_dim=method.key_dim)
    engine = Engine(tiny_lm, method, store)
    engine.ingest([SourceDocument(text=t, source=t) for t in ["alpha", "beta wend", "alpha karst", "alpha morrow"]])
    # "alpha" is in three of the four documents: with IDF the one document holding "beta" matches best
    assert engine.retrieve("alpha beta", 1)[0].text == found
    assert [r[0].text for r in engine.retrieve_many(["alpha beta", "karst"], 1)] == [found, "alpha karst"]
    store.close()
