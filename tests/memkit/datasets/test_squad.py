"""The SQuAD loader: paragraphs become documents, answerable questions become questions."""

from __future__ import annotations

import pytest

from memkit.datasets.loaders import squad

SB = "Super Bowl 50 was an American football game. The Denver Broncos defeated the Carolina Panthers 24–10."
SB2 = "The game was played on February 7, 2016, at Levi's Stadium in Santa Clara, California."
WARSAW = "Warsaw is the capital and largest city of Poland. It stands on the Vistula River."


def v11():
    return {"version": "1.1", "data": [
        {"title": "Super_Bowl_50", "paragraphs": [
            {"context": SB, "qas": [
                {"id": "56be4db0acb8001400a502ec", "question": "Which team won Super Bowl 50?",
                 "answers": [{"text": "Denver Broncos", "answer_start": 50},
                             {"text": "Denver Broncos", "answer_start": 50},
                             {"text": "Broncos", "answer_start": 57}]},
                {"id": "56be4db0acb8001400a502ed", "question": "Who lost Super Bowl 50?",
                 "answers": [{"text": "Carolina Panthers", "answer_start": 78}]}]},
            {"context": SB2, "qas": [
                {"id": "56be4db0acb8001400a502ee", "question": "Where was Super Bowl 50 played?",
                 "answers": [{"text": "Levi's Stadium", "answer_start": 44}]}]}]},
        {"title": "Warsaw", "paragraphs": [
            {"context": WARSAW, "qas": [
                {"id": "57336755d058e614000b5a3e", "question": "What river is Warsaw on?",
                 "answers": [{"text": "the Vistula River", "answer_start": 61}]}]}]},
    ]}


def v20():
    data = v11()
    data["version"] = "v2.0"
    qas = data["data"][1]["paragraphs"][0]["qas"]
    qas[0]["is_impossible"] = False
    qas.append({"id": "5ad3ed86604f3c001a3ff7b2", "question": "What river is Krakow on?", "answers": [],
                "plausible_answers": [{"text": "Vistula", "answer_start": 65}], "is_impossible": True})
    return data


def test_paragraphs_and_questions(write_json):
    bench = squad.load(write_json("dev-v1.1.json", v11()))
    bench.validate()
    assert bench.name == "squad" and bench.meta["version"] == "1.1"
    assert [d.external_id for d in bench.documents] == ["Super_Bowl_50/0", "Super_Bowl_50/1", "Warsaw/0"]
    assert bench.documents[0].text == SB and bench.documents[0].meta == {"title": "Super_Bowl_50", "paragraph": 0}
    assert [q.id for q in bench.questions] == ["56be4db0acb8001400a502ec", "56be4db0acb8001400a502ed",
                                               "56be4db0acb8001400a502ee", "57336755d058e614000b5a3e"]
    first = bench.questions[0]
    assert first.question == "Which team won Super Bowl 50?"
    assert first.answers == ["Denver Broncos", "Broncos"]          # duplicates folded, order kept
    assert first.doc_ids == ["Super_Bowl_50/0"] and first.type == "single"
    assert bench.questions[2].doc_ids == ["Super_Bowl_50/1"]
    assert bench.questions[3].doc_ids == ["Warsaw/0"]


def test_limit_keeps_only_the_cited_paragraphs(write_json):
    bench = squad.load(write_json("dev-v1.1.json", v11()), limit=2)
    assert len(bench.questions) == 2
    assert [d.external_id for d in bench.documents] == ["Super_Bowl_50/0"]
    bench.validate()


def test_v2_unanswerable_skipped_by_default(write_json):
    bench = squad.load(write_json("dev-v2.0.json", v20()))
    assert "5ad3ed86604f3c001a3ff7b2" not in [q.id for q in bench.questions]
    assert bench.meta["skipped_unanswerable"] == 1 and len(bench.questions) == 4


def test_v2_unanswerable_kept_on_request(write_json):
    bench = squad.load(write_json("dev-v2.0.json", v20()), keep_unanswerable=True)
    bench.validate()
    last = bench.questions[-1]
    assert last.id == "5ad3ed86604f3c001a3ff7b2"
    assert last.answers == [""] and last.type == "unanswerable" and last.doc_ids == ["Warsaw/0"]


def test_repeated_titles_get_distinct_ids(write_json):
    data = v11()
    data["data"].append(data["data"][1] | {"paragraphs": [
        {"context": "Warsaw has many parks.", "qas": [
            {"id": "x1", "question": "What does Warsaw have many of?", "answers": [{"text": "parks"}]}]}]})
    bench = squad.load(write_json("merged.json", data))
    bench.validate()
    assert bench.questions[-1].doc_ids == ["Warsaw~2/0"]


def test_malformed_question_is_refused_with_its_place(write_json):
    data = v11()
    del data["data"][0]["paragraphs"][1]["qas"][0]["question"]
    path = write_json("dev-v1.1.json", data)
    with pytest.raises(ValueError) as err:
        squad.load(path)
    message = str(err.value)
    assert message.startswith("squad: ") and str(path) in message
    assert "'question'" in message and "data[0].paragraphs[1].qas[0]" in message


def test_wrong_shape_and_bad_json_are_refused(write_json, tmp_path):
    with pytest.raises(ValueError, match="no top-level 'data' list.*expected a SQuAD"):
        squad.load(write_json("other.json", {"questions": []}))
    bad = tmp_path / "broken.json"
    bad.write_text('{"data": [', encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        squad.load(bad)


def test_missing_file_is_refused(tmp_path):
    missing = tmp_path / "nope" / "dev-v1.1.json"
    with pytest.raises(ValueError) as err:
        squad.load(missing)
    assert "squad" in str(err.value) and str(missing) in str(err.value)
    assert "no such file" in str(err.value) and "expected" in str(err.value)
