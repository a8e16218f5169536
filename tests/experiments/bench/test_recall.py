"""Retrieval recall of a method's keys: a question's own document among the first k found."""

from __future__ import annotations

import pytest

from experiments.bench.config import BenchConfig
from memkit.datasets.records import Benchmark, BenchQuestion
from experiments.bench.recall import measure_recall
from memkit.errors import ConfigError


def test_a_document_asked_in_its_own_words_is_found_first(tiny_lm, bench):
    questions = [BenchQuestion(id=f"q{i}", question=d.text, answers=["x"], doc_ids=[d.external_id])
                 for i, d in enumerate(bench.documents)]
    questions.append(BenchQuestion(id="two", question="both", answers=["x"],
                                   doc_ids=[bench.documents[0].external_id, bench.documents[1].external_id]))   # not measured
    echo = Benchmark(name="echo", documents=bench.documents, questions=questions)
    cfg = BenchConfig(methods=["prompt", "rag"], seed=0, batch_size=2,
                      method_options={"rag": {"chunk_tokens": "16", "chunk_overlap": "0"}})
    result = measure_recall(echo, tiny_lm, cfg, [1, 2, len(bench.documents)], batch=3)
    assert result["documents"] == len(bench.documents)
    for row in result["methods"]:
        assert row["questions"] == len(bench.documents)
        assert row["recall_at_1"] <= row["recall_at_2"] <= row[f"recall_at_{len(bench.documents)}"] == 100.0
    prompt = result["methods"][0]
    assert prompt["recall_at_1"] == 100.0          # a whole document's lexical key is the question's own key


def test_questions_about_other_documents_are_left_out(tiny_lm, bench):
    cfg = BenchConfig(methods=["prompt"], n_docs=1, seed=0)
    with pytest.raises(ConfigError, match="one gold document"):
        measure_recall(Benchmark("none", bench.documents, []), tiny_lm, cfg, [1])
    with pytest.raises(ConfigError, match="k of at least 1"):
        measure_recall(bench, tiny_lm, cfg, [0])
