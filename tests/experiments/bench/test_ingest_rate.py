"""The ingest-rate benchmark's dataset stream (``--benchmark``, ``--data``) and its forward-pass reference on the
named model (``--model``); no ``memkit ingest`` process is run and only the tiny model is loaded."""

from __future__ import annotations

import json

import pytest

from experiments.bench.benchmarks import ENGLISH_DATA
from experiments.bench.ingest_rate import dataset_stream, forward_rate, main
from memkit.datasets.loaders import load_benchmark
from memkit.errors import ConfigError


def test_english_stream_repeats_its_documents_as_marked_copies(tmp_path):
    docs = load_benchmark("english", ENGLISH_DATA).documents
    n = len(docs) + 10
    stream = tmp_path / "stream.jsonl"
    texts, about = dataset_stream(stream, n, "english", str(ENGLISH_DATA))
    rows = [json.loads(line) for line in stream.read_text("utf-8").splitlines()]
    assert [r["text"] for r in rows] == texts and len(texts) == len(set(texts)) == n
    assert len({r["id"] for r in rows}) == n and rows[0]["source"] == docs[0].source
    assert texts[:len(docs)] == [d.text for d in docs]
    assert texts[len(docs)] == f"[memkit bench copy 1]\n{docs[0].text}"
    assert rows[len(docs)]["id"] == f"{docs[0].external_id}~copy1"
    assert about["dataset_documents"] == len(docs) and about["marked_copies"] == 10 and "copy" in about["rule"]


def test_english_stream_of_fewer_documents_takes_the_first_and_records_no_rule(tmp_path):
    texts, about = dataset_stream(tmp_path / "s.jsonl", 5, "english", str(ENGLISH_DATA))
    assert texts == [d.text for d in load_benchmark("english", ENGLISH_DATA).documents[:5]]
    assert about["marked_copies"] == 0 and "rule" not in about


def test_a_dataset_without_data_is_refused_naming_data(tmp_path, capsys):
    with pytest.raises(ConfigError, match="--data PATH"):
        dataset_stream(tmp_path / "s.jsonl", 5, "english", None)
    assert main(["--benchmark", "english", "--docs", "5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --benchmark english") and "--data" in err


def test_the_forward_reference_loads_the_named_model(tiny_model_dir, tiny_lm):
    result = forward_rate(["one small document", "and another"], 2, repeats=1, model=str(tiny_model_dir("llama")))
    assert result["model"] == tiny_lm.name
    assert result["docs_per_s"] > 0 and result["tokens_per_doc"] > 0
