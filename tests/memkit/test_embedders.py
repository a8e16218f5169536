"""Key encoders: the lexical encoder's keys are unit vectors whose inner product follows shared content words."""

from __future__ import annotations

import numpy as np
import pytest

from memkit.embedders import LexicalEmbedder, build_embedder


def test_lexical_keys_are_unit_vectors_and_ignore_case_and_function_words():
    enc = LexicalEmbedder(dim=256)
    keys = enc.embed(["Ada Varn lives in Port Elsin.", "ADA varn LIVES port elsin", "the of and is", ""])
    assert keys.shape == (4, 256) and keys.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(keys[:2], axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(keys[0], keys[1])          # case and function words make no difference
    assert not keys[2].any() and not keys[3].any()         # nothing left to match: a zero key, never NaN


def test_a_question_finds_the_document_that_shares_its_rare_words():
    enc = LexicalEmbedder()
    docs = ["Larov Guild has its head office in Brisin. It works in tanning.",
            "Gamor Holdings has its head office in Gilsin. It works in mining.",
            "Alra Hebek was born in Veldale and lives in Ostvik."]
    questions = ["In which city is Larov Guild headquartered?", "What industry is Gamor Holdings in?",
                 "Where was Alra Hebek born?"]
    scores = enc.embed(questions) @ enc.embed(docs).T
    assert scores.argmax(axis=1).tolist() == [0, 1, 2]


def test_repeated_words_count_sublinearly():
    enc = LexicalEmbedder(dim=1024)
    once, thrice = enc.embed(["brisin tanning", "brisin brisin brisin tanning"])
    assert 0.8 < float(once @ thrice) < 1.0


def _frequencies(keys: np.ndarray):
    return lambda: ((keys != 0).sum(0), len(keys))


def test_idf_weighting_lets_a_rare_query_word_outweigh_a_word_every_document_has():
    docs = ["alpha", "beta wend", "alpha karst", "alpha morrow"]
    question = ["alpha beta"]
    idf, plain = LexicalEmbedder(), LexicalEmbedder(idf=False)
    keys = idf.embed(docs)
    np.testing.assert_array_equal(keys, plain.embed(docs))      # stored keys carry no weights
    unweighted = plain.weigh_queries(idf.embed(question), _frequencies(keys)) @ keys.T
    weighted = idf.weigh_queries(idf.embed(question), _frequencies(keys))
    assert unweighted.argmax() == 0                                # "alpha" alone matches best by plain cosine
    assert (weighted @ keys.T).argmax() == 1                       # the one document with "beta" wins with IDF
    np.testing.assert_allclose(np.linalg.norm(weighted, axis=1), 1.0, rtol=1e-6)
    assert float((weighted @ keys.T).max()) <= 1.0 + 1e-6
    # an empty store (no statistics yet) leaves the query as it was
    empty = idf.weigh_queries(idf.embed(question), lambda: (np.zeros(idf.dim, np.int64), 0))
    np.testing.assert_array_equal(empty, idf.embed(question))


def test_build_embedder_names_the_lexical_encoder(tiny_lm):
    enc = build_embedder(tiny_lm, "lexical", None)
    assert enc.describe() == {"embedder": "lexical", "dim": enc.dim} and enc.idf
    assert build_embedder(tiny_lm, "lexical-tf", None).describe() == {"embedder": "lexical-tf", "dim": enc.dim}
    assert build_embedder(tiny_lm, "lm", None).dim == tiny_lm.hidden_size
    with pytest.raises(ValueError, match="16"):
        LexicalEmbedder(dim=4)
