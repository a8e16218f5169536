"""The runner: one method over a benchmark, every answer recorded; the oracle setting; every protocol runs."""

from __future__ import annotations

import pytest

from benchhelpers import FAST_OPTIONS
from experiments.bench.runner import MethodSession, run_method
from memkit.errors import ConfigError

REQUIRED = ["method", "setting", "protocol", "n_docs", "context_tokens", "em", "f1", "f1_by_type",
            "latency_ms_p50", "latency_ms_p95", "tokens_per_question", "flops_per_question", "peak_memory_mb",
            "bytes_per_doc"]


@pytest.mark.parametrize("name", ["closed_book", "prompt", "rag", "finetune"])
def test_run_method_records_every_question(tiny_lm, bench, name):
    results = run_method(bench, name, tiny_lm, FAST_OPTIONS[name], seed=0, batch_size=4)
    assert [r.question_id for r in results] == [q.id for q in bench.questions]
    known = {d.external_id for d in bench.documents}
    for r in results:
        assert 0.0 <= r.em <= 1.0 and 0.0 <= r.f1 <= 1.0
        assert r.latency_ms > 0 and r.prompt_tokens > 0 and 1 <= r.generated_tokens <= 3
        assert r.tokens_processed == r.prompt_tokens + r.generated_tokens
        assert r.method == name and r.type in {"home", "city", "multi"}
        assert set(r.sources) <= known
        if name in ("closed_book", "finetune"):
            assert r.sources == []
        else:
            assert r.sources
    again = run_method(bench, name, tiny_lm, FAST_OPTIONS[name], seed=0, batch_size=2)
    assert [r.prediction for r in again] == [r.prediction for r in results], "same seed, same answers"


def test_oracle_puts_exactly_the_gold_documents_in_the_prompt(tiny_lm, bench, monkeypatch):
    prompts: list[str] = []
    generate = tiny_lm.generate

    def spy(batch, **kwargs):
        prompts.extend(batch)
        return generate(batch, **kwargs)

    monkeypatch.setattr(tiny_lm, "generate", spy)
    with MethodSession(tiny_lm, "prompt", FAST_OPTIONS["prompt"], setting="oracle", batch_size=3) as session:
        session.ingest(bench.documents)
        results = session.ask(bench.questions)
    assert len(prompts) == len(bench.questions)
    texts = {d.external_id: d.text for d in bench.documents}
    for question, prompt, result in zip(bench.questions, prompts, results):
        inside = {doc_id for doc_id, text in texts.items() if text in prompt}
        assert inside == set(question.doc_ids), question.id
        assert result.sources == question.doc_ids and result.setting == "oracle"


def test_adapter_oracle_merges_exactly_the_stored_states_of_the_gold_documents(tiny_lm, bench, tiny_generator_dir):
    options = {"generator": str(tiny_generator_dir), "chunk_tokens": 32, "top_n": 4, "max_new_tokens": 2}
    with MethodSession(tiny_lm, "adapter", options, setting="oracle", batch_size=3) as session:
        session.ingest(bench.documents)
        seen: list[tuple[set, int]] = []
        combine = session.method.combine

        def spy(question, retrieved, top_k=None):
            context = combine(question, retrieved, top_k)
            seen.append(({r.document_id for r in retrieved if r.payload}, context.plan.merged))
            return context

        session.method.combine = spy
        results = session.ask(bench.questions)
    for question, (docs, merged), result in zip(bench.questions, seen, results):
        assert docs == {session.store_ids[d] for d in question.doc_ids}, question.id
        assert merged == len(question.doc_ids)
        assert result.sources == question.doc_ids and result.setting == "oracle"


def test_a_slot_models_read_of_the_question_counts_as_tokens_processed(tiny_lm, bench, tiny_slot_dir):
    options = {"model": str(tiny_slot_dir), "top_k": 2, "max_new_tokens": 2}
    with MethodSession(tiny_lm, "slots", options, batch_size=3) as session:
        session.ingest(bench.documents)
        results = session.ask(bench.questions[:3])
    slots = session.method.model.config.slots
    for q, r in zip(bench.questions, results):
        assert r.read_tokens == tiny_lm.count_tokens(q.question) + len(tiny_lm.bos_ids) + slots
        assert r.tokens_processed == r.prompt_tokens + r.generated_tokens + r.read_tokens


def test_settings_a_method_does_not_take_are_refused(tiny_lm):
    with pytest.raises(ConfigError, match="oracle"):
        MethodSession(tiny_lm, "rag", setting="oracle")


def test_every_protocol_gives_full_rows_for_every_method(full_run):
    rows = full_run["results"]
    seen = {(r["method"], r["setting"], r["protocol"]) for r in rows}
    for method, setting in [("closed_book", "none"), ("prompt", "retrieve"), ("prompt", "oracle"),
                            ("rag", "retrieve"), ("finetune", "parametric")]:
        for protocol in ("stream", "sweep", "retention"):
            assert (method, setting, protocol) in seen
    for row in rows:
        for field in REQUIRED:
            assert field in row, field
        assert 0.0 <= row["em"] <= 100.0 and 0.0 <= row["f1"] <= 100.0
        assert all(0.0 <= v <= 100.0 for v in row["f1_by_type"].values())
        assert row["n_questions"] > 0
        assert row["latency_ms_p95"] >= row["latency_ms_p50"] > 0
        assert row["tokens_per_question"] > 0 and row["flops_per_question"] >= row["answer_flops_per_question"] > 0
        assert row["peak_memory_mb"] > 0 and row["bytes_per_doc"] > 0
        assert 0.0 <= row["truncation_rate"] <= 1.0


def test_every_method_answers_the_same_questions(full_run):
    counts = {}
    for row in full_run["results"]:
        key = (row["protocol"], row.get("phase"), row["context_tokens"])
        counts.setdefault(key, set()).add(row["n_questions"])
    assert all(len(v) == 1 for v in counts.values())


def test_costs_follow_the_documented_formulas(full_run):
    params = full_run["config"]["non_embedding_params"]
    for row in full_run["results"]:
        assert row["answer_flops_per_question"] == pytest.approx(2 * params * row["tokens_per_question"], rel=1e-3)
        if row["method"] == "closed_book":
            assert row["encode_flops"] == 0
        else:
            assert row["encode_flops"] > 0
        if row["method"] == "finetune":
            assert row["state_bytes"] > 0 and row["method_config"]["steps"] == 1
            assert "lr" in row["method_config"]


def test_retention_reports_before_and_after(full_run):
    rows = [r for r in full_run["results"] if r["protocol"] == "retention"]
    for method in {r["method"] + r["setting"] for r in rows}:
        pair = {r["phase"]: r for r in rows if r["method"] + r["setting"] == method}
        assert set(pair) == {"before", "after"}
        before, after = pair["before"], pair["after"]
        assert before["n_docs"] == 3 and after["n_docs"] == 6
        assert before["n_questions"] == after["n_questions"] == 4   # q0, q1, q2 and the pair question (d1, d2)
        for row in (before, after):
            assert row["f1_before"] == before["f1"] and row["f1_after"] == after["f1"]
            assert row["f1_drop"] == pytest.approx(before["f1"] - after["f1"])


def test_sweep_rows_follow_the_context_lengths(full_run):
    rows = [r for r in full_run["results"] if r["protocol"] == "sweep" and r["method"] == "prompt"]
    assert sorted(r["context_tokens"] for r in rows if r["setting"] == "retrieve") == [80, 200]
    for row in rows:
        assert row["n_groups"] >= 1 and row["mean_context_tokens"] > 0
