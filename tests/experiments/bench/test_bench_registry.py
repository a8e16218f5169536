"""``load_benchmark``: the loader table, and its refusals of unknown names, paths, options and bad output."""

from __future__ import annotations

import pytest

from memkit.datasets.records import BenchQuestion, Benchmark
from memkit.datasets.loaders import LOADERS, DatasetError, load_benchmark, options_of

SQUAD = {"version": "1.1", "data": [{"title": "Normans", "paragraphs": [{
    "context": "The Normans gave their name to Normandy, a region in France.",
    "qas": [{"id": "56ddde6b9a695914005b9628", "question": "In what country is Normandy located?",
             "answers": [{"text": "France", "answer_start": 55}]}]}]}]}


def test_every_dataset_has_a_loader_with_a_limit():
    assert list(LOADERS) == ["squad", "streamingqa", "archivalqa", "msc", "metaicl", "english"]
    for name in LOADERS:
        assert "limit" in options_of(name)
    assert {"k", "seed"} <= set(options_of("metaicl")) and "max_docs" in options_of("streamingqa")


def test_loads_and_validates(write_json):
    bench = load_benchmark("squad", write_json("dev-v1.1.json", SQUAD), limit=1)
    assert bench.name == "squad" and [q.answers for q in bench.questions] == [["France"]]


def test_unknown_dataset_names_the_choices(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset.*squad, streamingqa, archivalqa, msc, metaicl"):
        load_benchmark("triviaqa", tmp_path)


def test_missing_path_names_dataset_path_and_expectation(tmp_path):
    missing = tmp_path / "dev-v1.1.json"
    with pytest.raises(DatasetError) as err:
        load_benchmark("squad", missing)
    assert isinstance(err.value, ValueError)
    message = str(err.value)
    assert message.startswith("squad: ") and str(missing) in message and "expected a SQuAD" in message


def test_unknown_option_names_the_accepted_ones(write_json):
    with pytest.raises(ValueError, match="unknown option 'max_docs'.*keep_unanswerable"):
        load_benchmark("squad", write_json("dev-v1.1.json", SQUAD), max_docs=3)


def test_an_inconsistent_benchmark_is_refused(monkeypatch, write_json):
    def broken(path, *, limit=None):
        return Benchmark("squad", [], [BenchQuestion("q1", "?", ["a"], ["nowhere"])])

    monkeypatch.setitem(LOADERS, "squad", broken)
    with pytest.raises(ValueError, match="inconsistent.*unknown document nowhere"):
        load_benchmark("squad", write_json("dev-v1.1.json", SQUAD))
