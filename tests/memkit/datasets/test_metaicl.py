"""The MetaICL loader: k demonstrations per task as a document, test examples as questions."""

from __future__ import annotations

import pytest

from memkit.datasets.loaders import metaicl

RTE = ["entailment", "not_entailment"]


def rte(n, label):
    return {"task": "glue-rte", "input": f"Premise {n}. [SEP] Hypothesis {n}.", "output": label, "options": RTE}


def qa(n):
    return {"task": "freebase_qa", "input": f"Which river flows through city {n}?", "output": f"River {n}",
            "options": []}


def write_data_dir(write_jsonl):
    """A MetaICL data/ directory with k=2: seed-13 and seed-100 training samples and a test file per task."""
    write_jsonl("data/glue-rte/glue-rte_2_13_train.jsonl", [rte(1, RTE[0]), rte(2, RTE[1])])
    write_jsonl("data/glue-rte/glue-rte_2_100_train.jsonl", [rte(3, RTE[1]), rte(4, RTE[0])])
    write_jsonl("data/glue-rte/glue-rte_2_100_test.jsonl", [rte(10, RTE[0]), rte(11, RTE[1]), rte(12, RTE[0])])
    write_jsonl("data/freebase_qa/freebase_qa_2_13_train.jsonl", [qa(1), qa(2)])
    write_jsonl("data/freebase_qa/freebase_qa_2_100_test.jsonl", [qa(10), qa(11)])


def test_data_directory_pairs_demonstrations_with_tests(write_jsonl, tmp_path):
    write_data_dir(write_jsonl)
    bench = metaicl.load(tmp_path / "data", k=2, seed=13)
    bench.validate()
    assert [d.external_id for d in bench.documents] == ["freebase_qa/demos", "glue-rte/demos"]
    assert bench.document("glue-rte/demos").text == (
        "Input: Premise 1. [SEP] Hypothesis 1.\nOutput: entailment\n\n"
        "Input: Premise 2. [SEP] Hypothesis 2.\nOutput: not_entailment")
    assert [q.id for q in bench.questions] == ["freebase_qa/0", "freebase_qa/1", "glue-rte/0", "glue-rte/1",
                                               "glue-rte/2"]
    q = bench.questions[3]
    assert q.question == "Premise 11. [SEP] Hypothesis 11." and q.answers == ["not_entailment"]
    assert q.doc_ids == ["glue-rte/demos"] and q.type == "glue-rte" and q.meta["options"] == RTE
    assert bench.questions[0].meta["options"] == []


def test_seed_picks_the_training_sample(write_jsonl, tmp_path):
    write_data_dir(write_jsonl)
    bench = metaicl.load(tmp_path / "data" / "glue-rte", k=2, seed=100)
    assert bench.documents[0].text.startswith("Input: Premise 3.")
    with pytest.raises(ValueError, match="freebase_qa_2_100_train.jsonl"):
        metaicl.load(tmp_path / "data", k=2, seed=100)        # freebase_qa has no seed-100 sample


def test_limit_is_round_robin_over_tasks(write_jsonl, tmp_path):
    write_data_dir(write_jsonl)
    bench = metaicl.load(tmp_path / "data", k=2, seed=13, limit=3)
    assert [q.id for q in bench.questions] == ["freebase_qa/0", "freebase_qa/1", "glue-rte/0"]
    only = metaicl.load(tmp_path / "data", k=2, seed=13, tasks="glue-rte", limit=1)
    assert [q.id for q in only.questions] == ["glue-rte/0"] and [d.external_id for d in only.documents] == ["glue-rte/demos"]
    with pytest.raises(ValueError, match="no task 'sst2'"):
        metaicl.load(tmp_path / "data", k=2, seed=13, tasks=["sst2"])


def test_single_test_file_uses_its_training_sibling(write_jsonl, tmp_path):
    write_data_dir(write_jsonl)
    bench = metaicl.load(tmp_path / "data" / "glue-rte" / "glue-rte_2_100_test.jsonl", k=2, seed=13)
    assert len(bench.questions) == 3 and "Premise 1." in bench.documents[0].text


def test_plain_file_is_split_by_seed(write_jsonl):
    path = write_jsonl("mixed.jsonl", [rte(n, RTE[n % 2]) for n in range(5)] + [qa(n) for n in range(4)])
    bench = metaicl.load(path, k=2, seed=7)
    bench.validate()
    assert [q.type for q in bench.questions].count("glue-rte") == 3
    assert [q.type for q in bench.questions].count("freebase_qa") == 2
    again = metaicl.load(path, k=2, seed=7)
    assert [q.id for q in again.questions] == [q.id for q in bench.questions]
    assert [d.text for d in again.documents] == [d.text for d in bench.documents]
    demos = bench.document("glue-rte/demos").text
    held_out = {q.question for q in bench.questions}
    assert not any(text in demos for text in held_out)           # demonstrations are never test examples
    with pytest.raises(ValueError, match="too few"):
        metaicl.load(path, k=4)                                    # freebase_qa has only 4 examples


def test_malformed_line_is_refused(write_jsonl):
    rows = [rte(n, RTE[0]) for n in range(4)]
    del rows[2]["output"]
    path = write_jsonl("rte.jsonl", rows)
    with pytest.raises(ValueError) as err:
        metaicl.load(path, k=2)
    message = str(err.value)
    assert message.startswith("metaicl: ") and str(path) in message
    assert "line 3" in message and "'output'" in message and "expected" in message


def test_bad_options_are_refused(write_jsonl):
    path = write_jsonl("rte.jsonl", [rte(n, RTE[0]) for n in range(4)])
    with pytest.raises(ValueError, match="option k"):
        metaicl.load(path, k=0)
    with pytest.raises(ValueError, match="option seed"):
        metaicl.load(path, seed=None)
    with pytest.raises(ValueError, match="option limit"):
        metaicl.load(path, limit="ten")


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(ValueError) as err:
        metaicl.load(tmp_path / "data")
    assert "metaicl" in str(err.value) and str(tmp_path / "data") in str(err.value)
