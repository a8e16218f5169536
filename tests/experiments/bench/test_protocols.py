"""The protocols' plans, checked without a model: which documents each step ingests and which questions it asks."""

from __future__ import annotations

import pytest

from experiments.bench.config import BenchConfig, parse_method, parse_options
from experiments.bench.protocols import plan, retention_plan, stream_plan, sweep_plan
from memkit.errors import ConfigError


def words(text: str) -> int:
    return len(text.split())


def test_stream_asks_only_what_has_been_ingested(bench):
    steps = stream_plan(bench, BenchConfig(checkpoints=2), words)
    assert [s.fresh for s in steps] == [True, False]
    assert [[d.external_id for d in s.ingest] for s in steps] == [["d0", "d1", "d2"], ["d3", "d4", "d5"]]
    assert [q.id for q in steps[0].ask] == ["q0", "q1", "q2", "q-pair"]
    assert len(steps[1].ask) == len(bench.questions)
    assert [s.label["n_docs"] for s in steps] == [3, 6]
    assert steps[1].label["context_tokens"] == sum(words(d.text) for d in bench.documents)


def test_stream_with_n_docs_keeps_the_first_documents(bench):
    (step,) = stream_plan(bench, BenchConfig(n_docs=2), words)
    assert [d.external_id for d in step.ingest] == ["d0", "d1"]
    assert [q.id for q in step.ask] == ["q0", "q1"]


def test_sweep_packs_documents_into_contexts_of_at_most_l_tokens(bench):
    size = words(bench.documents[0].text)
    steps = sweep_plan(bench, BenchConfig(context_tokens=[size, 2 * size + 1]), words)
    small = [s for s in steps if s.label["context_tokens"] == size]
    large = [s for s in steps if s.label["context_tokens"] == 2 * size + 1]
    assert all(s.fresh for s in steps)
    assert [len(s.ingest) for s in small] == [1] * 6
    assert [[d.external_id for d in s.ingest] for s in large] == [["d0", "d1"], ["d2", "d3"], ["d4", "d5"]]
    assert all(q.id != "q-pair" for s in large for q in s.ask), "d1 and d2 fall in different contexts"
    for s in steps:
        ids = {d.external_id for d in s.ingest}
        assert s.ask and all(set(q.doc_ids) <= ids for q in s.ask)
        assert sum(words(d.text) for d in s.ingest) <= s.label["context_tokens"] or len(s.ingest) == 1
    assert large[0].label["n_groups"] == 3


def test_sweep_max_groups_caps_the_contexts(bench):
    steps = sweep_plan(bench, BenchConfig(context_tokens=[1], max_groups=2), words)
    assert len(steps) == 2


def test_retention_asks_the_first_documents_questions_twice(bench):
    before, after = retention_plan(bench, BenchConfig(retention_split=0.5), words)
    assert before.fresh and not after.fresh
    assert [d.external_id for d in before.ingest] == ["d0", "d1", "d2"] and [d.external_id for d in after.ingest] == ["d3", "d4", "d5"]
    assert before.ask == after.ask and [q.id for q in before.ask] == ["q0", "q1", "q2", "q-pair"]
    assert (before.label["phase"], after.label["phase"]) == ("before", "after")
    with pytest.raises(ConfigError, match="at least 2"):
        retention_plan(bench, BenchConfig(n_docs=1), words)


def test_plan_runs_protocols_in_the_order_asked(bench):
    steps = plan(bench, BenchConfig(protocols=["retention", "stream"]), words)
    assert [s.label["protocol"] for s in steps] == ["retention", "retention", "stream"]


@pytest.mark.parametrize("changes,flag", [({"protocols": ["nope"]}, "--protocol"), ({"n_docs": 0}, "--n-docs"),
                                          ({"context_tokens": [0]}, "--context-tokens"),
                                          ({"retention_split": 1.0}, "--retention-split"),
                                          ({"methods": ["prompt", "full"]}, "--methods"),
                                          ({"methods": ["rag:oracle"]}, "--methods")])
def test_bad_config_names_the_flag(changes, flag):
    with pytest.raises(ConfigError, match=flag):
        BenchConfig(**changes).validate()


def test_method_specs_and_options():
    options = parse_options(["finetune.steps=4", "closed.max_new_tokens=3"])
    assert options == {"finetune": {"steps": "4"}, "closed_book": {"max_new_tokens": "3"}}
    spec = parse_method("prompt:oracle", options)
    assert (spec.name, spec.setting, spec.label) == ("prompt", "oracle", "prompt:oracle")
    assert parse_method("finetune", options).options == {"steps": "4"}
    assert parse_method("closed", options).label == "closed_book"
    with pytest.raises(ConfigError, match="METHOD.OPTION"):
        parse_options(["steps=4"])
