"""memkit's own English QA set: the packaged files, checked for what the set promises, and the loader's refusals."""

from __future__ import annotations

import json
import re
from collections import defaultdict

import pytest

from experiments.bench.benchmarks import ENGLISH_DATA

from memkit.datasets.loaders import DatasetError, english, load_benchmark
from memkit.datasets.metrics import normalize_answer

RAW_DOCS = [json.loads(line) for line in (ENGLISH_DATA / "documents.jsonl").read_text("utf-8").splitlines()]
RAW_QUESTIONS = [json.loads(line) for line in
                 (ENGLISH_DATA / "questions.jsonl").read_text("utf-8").splitlines()]
TEXT = {d["id"]: d["text"] for d in RAW_DOCS}
STAMP = {d["id"]: d["timestamp"] for d in RAW_DOCS}


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("english", ENGLISH_DATA)


def of_type(kind: str) -> list[dict]:
    return [q for q in RAW_QUESTIONS if q["type"] == kind]


# ---- the packaged set ------------------------------------------------------------------------------------------
def test_the_packaged_set_loads_and_validates(bench):
    bench.validate()
    assert bench.name == "english" and ENGLISH_DATA.is_dir()
    assert len(bench.documents) == len(RAW_DOCS) and len(bench.questions) == len(RAW_QUESTIONS)
    assert bench.meta["counts"] == {kind: len(of_type(kind)) for kind in english.TYPES}
    stamps = [d.timestamp for d in bench.documents]
    assert stamps == sorted(stamps) and stamps[0].endswith("T00:00:00+00:00")
    dated = next(q for q in bench.questions if q.type == "as_of")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT00:00:00\+00:00", dated.timestamp)
    two = next(q for q in bench.questions if q.type == "two_doc")
    assert two.meta["bridge"] and len(two.doc_ids) == 2


def test_counts():
    assert len(RAW_DOCS) >= 50 and len(RAW_QUESTIONS) >= 200
    assert len(of_type("two_doc")) >= 40 and len(of_type("as_of")) >= 40
    assert len(of_type("single")) >= 150
    assert {q["type"] for q in RAW_QUESTIONS} == set(english.TYPES)


def test_ids_are_unique_and_documents_are_well_formed():
    assert len({d["id"] for d in RAW_DOCS}) == len(RAW_DOCS)
    assert len({q["id"] for q in RAW_QUESTIONS}) == len(RAW_QUESTIONS)
    assert len({d["text"] for d in RAW_DOCS}) == len(RAW_DOCS)
    for d in RAW_DOCS:
        assert set(d) == {"id", "text", "timestamp", "source"}
        assert re.fullmatch(r"2023|2024|2025", d["timestamp"][:4]) and len(d["timestamp"]) == 10
        assert re.fullmatch(r"[a-z]+/[a-z0-9-]+", d["source"]), d["source"]
        assert 60 <= len(d["text"].split()) <= 220, d["id"]
    assert len({d["source"].split("/")[0] for d in RAW_DOCS}) >= 6      # several genres


def test_every_answer_is_a_span_of_its_evidence_document():
    for q in RAW_QUESTIONS:
        evidence = TEXT[q["doc_ids"][-1]]
        assert q["answers"], q["id"]
        for answer in q["answers"]:
            assert answer.strip() and answer in evidence, (q["id"], answer)
            assert len(answer.split()) <= 9, (q["id"], answer)


def test_two_doc_questions_go_through_an_unnamed_bridge():
    for q in of_type("two_doc"):
        first, second = q["doc_ids"]
        assert first != second, q["id"]
        bridge = q["bridge"]
        assert bridge in TEXT[first] and bridge in TEXT[second], q["id"]
        assert bridge.lower() not in q["question"].lower(), q["id"]
        assert any(a in TEXT[second] for a in q["answers"]), q["id"]


def test_as_of_questions_come_in_pairs_across_an_update():
    groups = defaultdict(list)
    for q in of_type("as_of"):
        groups[q["question"]].append(q)
    assert len(groups) >= 20
    for text, qs in groups.items():
        assert len(qs) >= 2, text
        qs.sort(key=lambda q: q["as_of"])
        answers = [{normalize_answer(a) for a in q["answers"]} for q in qs]
        assert all(a.isdisjoint(b) for a, b in zip(answers, answers[1:])), text   # the value changes
        docs = {q["doc_ids"][0] for q in qs}
        for q in qs:
            (doc,) = q["doc_ids"]
            assert STAMP[doc] <= q["as_of"], q["id"]
            # the cited document is the newest of the pair's documents in force on that date
            in_force = [d for d in docs if STAMP[d] <= q["as_of"]]
            assert doc == max(in_force, key=lambda d: STAMP[d]), q["id"]
        assert STAMP[qs[0]["doc_ids"][0]] < STAMP[qs[-1]["doc_ids"][0]] <= qs[-1]["as_of"], text


def test_questions_that_are_not_dated_are_asked_once():
    undated = [q["question"] for q in RAW_QUESTIONS if q["type"] != "as_of"]
    assert len(undated) == len(set(undated))
    assert not set(undated) & {q["question"] for q in of_type("as_of")}


def test_limit_keeps_the_first_questions_their_documents_and_as_of_twins():
    bench = english.load(ENGLISH_DATA, limit=12)
    assert [q.id for q in bench.questions] == [q["id"] for q in RAW_QUESTIONS[:12]]
    kept = {d.external_id for d in bench.documents}
    assert {d for q in bench.questions for d in q.doc_ids} <= kept
    for q in bench.questions:
        if q.type == "as_of":
            twins = [r for r in of_type("as_of") if r["question"] == q.question]
            assert {d for r in twins for d in r["doc_ids"]} <= kept
    assert bench.meta["options"] == {"limit": 12}


def test_the_documents_are_what_memkit_ingest_reads():
    from memkit.sources import parse_jsonl_line

    lines = (ENGLISH_DATA / "documents.jsonl").read_bytes().splitlines()
    for n, raw in enumerate(lines, start=1):
        doc = parse_jsonl_line(raw, "documents.jsonl", n, None, n)
        assert doc.text == RAW_DOCS[n - 1]["text"] and doc.timestamp.startswith(RAW_DOCS[n - 1]["timestamp"])


# ---- the loader on other folders ---------------------------------------------------------------------------------
DOC = {"id": "d1", "text": "Tillerby Freight is headquartered in Oskvale.", "timestamp": "2024-01-02",
       "source": "news/tillerby"}
DOC2 = {"id": "d2", "text": "Mara Quell joined Tillerby Freight.", "timestamp": "2023-05-01"}
QUESTION = {"id": "q1", "question": "Where is Tillerby Freight?", "answers": ["Oskvale"], "doc_ids": ["d1"],
            "type": "single"}


@pytest.fixture
def folder(tmp_path, write_jsonl):
    def make(documents=(DOC, DOC2), questions=(QUESTION,)):
        write_jsonl("set/documents.jsonl", list(documents))
        write_jsonl("set/questions.jsonl", list(questions))
        return tmp_path / "set"

    return make


def test_a_small_folder_maps_as_documented(folder):
    dated = {"id": "q2", "question": "Where is Tillerby Freight?", "answers": "Oskvale", "doc_ids": ["d1"],
             "type": "as_of", "as_of": "2024-06-01"}
    two = {"id": "q3", "question": "Where is the firm Mara joined?", "answers": ["Oskvale"],
           "doc_ids": ["d2", "d1"], "type": "two_doc", "bridge": "Tillerby Freight", "note": "x"}
    bench = load_benchmark("english", folder(questions=[QUESTION, dated, two]))
    assert [d.external_id for d in bench.documents] == ["d2", "d1"]                        # time order
    assert bench.documents[1].source == "news/tillerby" and bench.documents[0].source == "d2"
    assert bench.documents[1].timestamp == "2024-01-02T00:00:00+00:00"
    q1, q2, q3 = bench.questions
    assert q1.type == "single" and q1.timestamp is None
    assert q2.answers == ["Oskvale"] and q2.timestamp == "2024-06-01T00:00:00+00:00"
    assert q3.doc_ids == ["d2", "d1"] and q3.meta == {"bridge": "Tillerby Freight", "note": "x"}


def test_a_malformed_line_names_the_file_and_line(folder):
    path = folder()
    with open(path / "questions.jsonl", "a", encoding="utf-8") as handle:
        handle.write("{not json\n")
    with pytest.raises(DatasetError) as err:
        load_benchmark("english", path)
    message = str(err.value)
    assert message.startswith("english: ") and str(path / "questions.jsonl") in message
    assert "(line 2)" in message and "not valid JSON" in message and "expected one JSON object" in message


@pytest.mark.parametrize("change, problem, where", [
    ({"question": None}, "missing field 'question'", "line 1"),
    ({"answers": []}, "holds no non-empty answer", "line 1"),
    ({"answers": [3]}, "'answers' is not a list of strings", "line 1"),
    ({"doc_ids": ["d9"]}, "doc_ids names 'd9', which is not in documents.jsonl", "line 1"),
    ({"type": "multi"}, "type 'multi' is not one of single, two_doc, as_of", "line 1"),
    ({"type": "two_doc"}, "cites 1 documents, not 2", "line 1"),
    ({"type": "as_of"}, "an as_of question has no 'as_of' date", "line 1"),
    ({"type": "as_of", "as_of": "soon"}, "as_of 'soon' is not a date", "line 1"),
    ({"type": "as_of", "as_of": "2023-12-31"}, "after the question's as_of", "line 1"),
])
def test_bad_questions_are_refused_with_their_line(folder, change, problem, where):
    question = {k: v for k, v in {**QUESTION, **change}.items() if v is not None}
    path = folder(questions=[question])
    with pytest.raises(DatasetError, match=re.escape(problem)) as err:
        english.load(path)
    assert err.value.where == where and err.value.path == str(path / "questions.jsonl")


@pytest.mark.parametrize("documents, problem, where", [
    ([DOC, {**DOC2, "timestamp": "last spring"}], "timestamp 'last spring' is not a date", "line 2"),
    ([DOC, {**DOC2, "text": ""}], "field 'text' is empty", "line 2"),
    ([{k: v for k, v in DOC.items() if k != "timestamp"}, DOC2], "missing field 'timestamp'", "line 1"),
    ([DOC, DOC2, DOC], "document id 'd1' appears twice", "line 3"),
])
def test_bad_documents_are_refused_with_their_line(folder, documents, problem, where):
    path = folder(documents=documents)
    with pytest.raises(DatasetError, match=re.escape(problem)) as err:
        english.load(path)
    assert err.value.where == where and err.value.path == str(path / "documents.jsonl")


def test_duplicate_question_ids_are_refused(folder):
    with pytest.raises(DatasetError, match="question id 'q1' appears twice"):
        english.load(folder(questions=[QUESTION, QUESTION]))


def test_a_file_or_an_incomplete_folder_is_refused(folder, tmp_path):
    path = folder()
    with pytest.raises(DatasetError, match="not a folder; expected a folder holding documents.jsonl"):
        english.load(path / "documents.jsonl")
    (path / "questions.jsonl").unlink()
    with pytest.raises(DatasetError, match="no questions.jsonl in the folder"):
        load_benchmark("english", path)
    with pytest.raises(DatasetError, match="no such file or directory"):
        load_benchmark("english", tmp_path / "absent")
    with pytest.raises(DatasetError, match=r"limit.*not a whole number"):
        english.load(ENGLISH_DATA, limit=0)
