"""The MSC loader: earlier sessions become documents, next-turn prediction becomes the question."""

from __future__ import annotations

import pytest

from memkit.datasets.loaders import msc

PERSONAS = [["I have two dogs.", "I work as a nurse."], ["I love hiking.", "I live in Denver."]]


def episode(data_id, previous, current):
    return {
        "personas": PERSONAS,
        "dialog": [{"id": f"Speaker {i % 2 + 1}", "text": t} for i, t in enumerate(current)],
        "metadata": {"initial_data_id": data_id, "session_id": len(previous) + 1},
        "previous_dialogs": [
            {"personas": PERSONAS, "dialog": [{"text": t} for t in turns], "time_num": 3, "time_unit": "days"}
            for turns in previous],
        "init_personas": PERSONAS,
    }


def lines():
    return [
        episode("train:ordered_2378", [
            ["Hi! How are your dogs doing?", "They're great, we went to the park.", "Fun! I went hiking."],
            ["Did you finish your shift?", "Yes, twelve hours at the hospital."],
        ], ["How was the hike last weekend?", "Beautiful, we climbed a fourteener.", "Wow, which one?",
            "Mount Bierstadt, near Denver."]),
        episode("train:ordered_911", [["Do you cook?", "Only pasta, honestly."]],
                ["Made any new pasta lately?", "Yes, a lemon garlic one."]),
    ]


def test_sessions_become_documents_and_turns_become_questions(write_jsonl):
    bench = msc.load(write_jsonl("msc_dialogue/session_3/test.txt", lines()))
    bench.validate()
    assert [d.external_id for d in bench.documents] == ["train:ordered_2378/session-1", "train:ordered_2378/session-2",
                                               "train:ordered_911/session-1"]
    assert bench.documents[0].text == ("Speaker 1: Hi! How are your dogs doing?\n"
                                       "Speaker 2: They're great, we went to the park.\n"
                                       "Speaker 1: Fun! I went hiking.")
    assert bench.documents[1].meta == {"episode": "train:ordered_2378", "session": 2,
                                       "time_num": 3, "time_unit": "days"}
    assert [q.id for q in bench.questions] == ["train:ordered_2378/turn-1", "train:ordered_2378/turn-2",
                                               "train:ordered_2378/turn-3", "train:ordered_911/turn-1"]
    q = bench.questions[2]
    assert q.question == ("Speaker 1: How was the hike last weekend?\n"
                          "Speaker 2: Beautiful, we climbed a fourteener.\n"
                          "Speaker 1: Wow, which one?\n"
                          "Speaker 2:")
    assert q.answers == ["Mount Bierstadt, near Denver."]
    assert q.doc_ids == ["train:ordered_2378/session-1", "train:ordered_2378/session-2"]
    assert q.type == "session_3" and q.meta["speaker"] == "Speaker 2" and q.meta["personas"] == PERSONAS
    assert bench.questions[3].type == "session_2" and bench.questions[3].doc_ids == ["train:ordered_911/session-1"]


def test_max_turns_and_limit(write_jsonl):
    path = write_jsonl("test.txt", lines())
    capped = msc.load(path, max_turns=1)
    assert [q.id for q in capped.questions] == ["train:ordered_2378/turn-1", "train:ordered_911/turn-1"]
    limited = msc.load(path, limit=2)
    assert len(limited.questions) == 2
    assert [d.external_id for d in limited.documents] == ["train:ordered_2378/session-1", "train:ordered_2378/session-2"]
    limited.validate()


def test_session_directory_uses_the_split(write_jsonl, tmp_path):
    write_jsonl("session_2/test.txt", lines())
    write_jsonl("session_2/valid.txt", lines()[1:])
    assert len(msc.load(tmp_path / "session_2").questions) == 4
    assert len(msc.load(tmp_path / "session_2", split="valid").questions) == 1
    with pytest.raises(ValueError, match="no train.txt"):
        msc.load(tmp_path / "session_2", split="train")


def test_turn_without_text_is_refused_with_its_place(write_jsonl):
    rows = lines()
    del rows[1]["previous_dialogs"][0]["dialog"][1]["text"]
    path = write_jsonl("test.txt", rows)
    with pytest.raises(ValueError) as err:
        msc.load(path)
    message = str(err.value)
    assert message.startswith("msc: ") and str(path) in message
    assert "line 2 previous_dialogs[0][1]" in message and "'text'" in message and "expected" in message


def test_missing_history_field_is_refused(write_jsonl):
    rows = lines()
    del rows[0]["previous_dialogs"]
    with pytest.raises(ValueError, match="line 1.*'previous_dialogs'"):
        msc.load(write_jsonl("test.txt", rows))


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(ValueError) as err:
        msc.load(tmp_path / "session_4" / "test.txt")
    assert "msc" in str(err.value) and "session_4" in str(err.value) and "no such file" in str(err.value)
