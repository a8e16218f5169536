"""The StreamingQA loader: a time-ordered document stream and dated questions citing it."""

from __future__ import annotations

import gzip
import json

import pytest

from memkit.datasets.loaders import streamingqa

# WMT sorting keys as the release builds them: publication time, SHA-256 of the text, separators.
K1 = "20200302000000000000\x00\x01" + "a1" * 32 + "\x00\x01"
K2 = "20200415000000000000\x00\x01" + "b2" * 32 + "\x00\x01"
K3 = "20200101000000000000\x00\x01" + "c3" * 32 + "\x00\x01"
K4 = "20200520000000000000\x00\x01" + "d4" * 32 + "\x00\x01"
T_MAR2, T_APR15, T_JAN1, T_MAY20 = 1583107200, 1586908800, 1577836800, 1589932800


def documents():
    return [  # deliberately not in time order; one timestamp is an ISO string
        {"id": K1, "text": "The city council approved the new bridge on Monday.", "timestamp": T_MAR2},
        {"id": K2, "text": "The striker signed a three-year contract with the club.", "timestamp": T_APR15},
        {"id": K3, "text": "Fireworks opened the new year in the harbour.", "timestamp": "2020-01-01T00:00:00Z"},
        {"id": K4, "text": "The museum reopened after renovation.", "timestamp": T_MAY20},
    ]


def questions():
    base = {"toxicity_identity_attack": 0.01, "toxicity_insult": 0.02}
    return [
        {"qa_id": "eval-0", "question": "What did the city council approve?",
         "answers": ["the new bridge", "a bridge", "new bridge"], "answers_additional": ["the bridge"],
         "question_ts": T_MAR2 + 86400 * 30, "evidence_ts": T_MAR2, "evidence_id": K1,
         "recent_or_past": "past", "written_or_generated": "written", **base},
        {"qa_id": "eval-1", "question": "How long is the striker's new contract?",
         "answers": ["three years", "3 years", "three-year"], "answers_additional": [""],
         "question_ts": T_APR15 + 86400, "evidence_ts": T_APR15, "evidence_id": K2,
         "recent_or_past": "recent", "written_or_generated": "generated", **base},
        {"qa_id": "eval-2", "question": "What opened the new year in the harbour?",
         "answers": ["fireworks", "Fireworks", "fireworks display"], "answers_additional": "",
         "question_ts": T_JAN1 + 86400 * 90, "evidence_ts": T_JAN1, "evidence_id": K3,
         "recent_or_past": "past", "written_or_generated": "written", **base},
    ]


def test_stream_ordered_by_time_and_questions_cite_it(write_jsonl):
    qs = write_jsonl("streaminqa_eval.jsonl", questions())
    docs = write_jsonl("documents.jsonl", documents())
    bench = streamingqa.load(qs, documents=docs)
    bench.validate()
    assert [d.external_id for d in bench.documents] == [K3, K1, K2, K4]
    assert bench.documents[0].timestamp == "2020-01-01T00:00:00+00:00"     # ISO "Z" made canonical
    assert bench.documents[1].timestamp == "2020-03-02T00:00:00+00:00"
    assert [q.id for q in bench.questions] == ["eval-0", "eval-1", "eval-2"]
    first = bench.questions[0]
    assert first.answers == ["the new bridge", "a bridge", "new bridge"] and first.doc_ids == [K1]
    assert first.type == "past" and first.timestamp == "2020-04-01T00:00:00+00:00"
    assert first.meta["evidence_ts"] == "2020-03-02T00:00:00+00:00"
    assert first.meta["answers_additional"] == ["the bridge"]
    assert bench.questions[1].type == "recent" and bench.questions[1].meta["answers_additional"] == []
    assert bench.meta["stream"] is True and bench.meta["skipped_questions"] == 0


def test_directory_with_gzipped_questions(tmp_path, write_jsonl):
    write_jsonl("data/documents.jsonl", documents())
    with gzip.open(tmp_path / "data" / "streaminqa_eval.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(q) + "\n" for q in questions())
    bench = streamingqa.load(tmp_path / "data")
    assert len(bench.questions) == 3 and len(bench.documents) == 4


def test_directory_with_several_splits_needs_the_split(write_jsonl, tmp_path):
    write_jsonl("data/documents.jsonl", documents())
    write_jsonl("data/streaminqa_eval.jsonl", questions())
    write_jsonl("data/streaminqa_valid.jsonl", questions()[:1])
    assert len(streamingqa.load(tmp_path / "data").questions) == 3          # split="eval" by default
    assert len(streamingqa.load(tmp_path / "data", split="valid").questions) == 1
    with pytest.raises(ValueError, match="split"):
        streamingqa.load(tmp_path / "data", split="train")


def test_limit_and_max_docs_keep_cited_documents_first(write_jsonl):
    qs = write_jsonl("q.jsonl", questions())
    docs = write_jsonl("documents.jsonl", documents())
    one = streamingqa.load(qs, documents=docs, limit=1)
    assert [q.id for q in one.questions] == ["eval-0"]
    assert [d.external_id for d in one.documents] == [K3, K1, K2, K4]               # whole stream by default
    capped = streamingqa.load(qs, documents=docs, limit=1, max_docs=2)
    assert [d.external_id for d in capped.documents] == [K3, K1]                    # K1 cited, K3 earliest other
    tight = streamingqa.load(qs, documents=docs, limit=2, max_docs=1)
    assert [d.external_id for d in tight.documents] == [K1, K2]                     # cited documents always kept
    tight.validate()


def test_question_without_its_document_is_skipped_or_refused(write_jsonl):
    qs = write_jsonl("q.jsonl", questions())
    docs = write_jsonl("documents.jsonl", [d for d in documents() if d["id"] != K2])
    bench = streamingqa.load(qs, documents=docs)
    assert [q.id for q in bench.questions] == ["eval-0", "eval-2"] and bench.meta["skipped_questions"] == 1
    with pytest.raises(ValueError, match="eval-1"):
        streamingqa.load(qs, documents=docs, strict=True)


def test_malformed_question_is_refused_with_its_line(write_jsonl):
    rows = questions()
    del rows[1]["question_ts"]
    qs = write_jsonl("q.jsonl", rows)
    docs = write_jsonl("documents.jsonl", documents())
    with pytest.raises(ValueError) as err:
        streamingqa.load(qs, documents=docs)
    message = str(err.value)
    assert message.startswith("streamingqa: ") and str(qs) in message
    assert "line 2" in message and "'question_ts'" in message and "expected" in message


def test_malformed_document_is_refused(write_jsonl):
    rows = documents()
    rows[2]["timestamp"] = "sometime in spring"
    docs = write_jsonl("documents.jsonl", rows)
    with pytest.raises(ValueError, match="line 3.*not a time"):
        streamingqa.load(write_jsonl("q.jsonl", questions()), documents=docs)


def test_documents_are_required(write_jsonl, tmp_path):
    qs = write_jsonl("q.jsonl", questions())
    with pytest.raises(ValueError, match="no documents given"):
        streamingqa.load(qs)
    with pytest.raises(ValueError, match="no such file"):
        streamingqa.load(qs, documents=tmp_path / "documents.jsonl")


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(ValueError) as err:
        streamingqa.load(tmp_path / "streaminqa_eval.jsonl", documents=tmp_path / "d.jsonl")
    assert "streamingqa" in str(err.value) and "streaminqa_eval.jsonl" in str(err.value)
