"""The ArchivalQA loader: paragraphs (deduplicated by para_id) as documents, CSV rows as questions."""

from __future__ import annotations

import csv

import pytest

from memkit.datasets.loaders import archivalqa

P1 = "Tenneco Inc. said today that it planned to sell its oil and gas operations for about $7 billion."
P2 = "Al Qaeda in the Islamic Maghreb claimed responsibility for the bombing in Bab Ezzouar."
P3 = "Haarhuis, who won the French Open doubles, also took the Wimbledon title that summer."
HEADER = ["id", "question", "answer", "org_answer", "answer_start", "para_id", "para_text",
          "trans_que", "trans_ans", "source"]
ROWS = [
    ["test_0", "When did Tenneco announce it planned to sell its oil and gas operations?", "May 26, 1988",
     "today", "13", "148748_0", P1, "0", "1", "rand"],
    ["test_1", "How much did Tenneco expect for its oil and gas operations?", "about $7 billion",
     "about $7 billion", "75", "148748_0", P1, "0", "0", "rand"],
    ["test_2", "Who claimed responsibility for the bombing of Bab Ezzouar?", "Al Qaeda in the Islamic Maghreb",
     "Al Qaeda in the Islamic Maghreb", "0", "1839755_20", P2, "0", "0", "wiki"],
    ["test_3", "Along with the French Open, what other tournament did Haarhuis win?", "Wimbledon",
     "Wimbledon", "55", "1043631_15", P3, "1", "0", "rand"],
]


def write_csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_paragraphs_deduplicated_and_rows_become_questions(tmp_path):
    bench = archivalqa.load(write_csv(tmp_path / "ArchivalQA_test.csv", HEADER, ROWS))
    bench.validate()
    assert [d.external_id for d in bench.documents] == ["148748_0", "1839755_20", "1043631_15"]
    assert bench.documents[0].text == P1 and bench.documents[0].meta == {"article": "148748"}
    assert [q.id for q in bench.questions] == ["test_0", "test_1", "test_2", "test_3"]
    first = bench.questions[0]
    assert first.answers == ["May 26, 1988"] and first.doc_ids == ["148748_0"]
    assert first.meta["org_answer"] == "today" and first.meta["trans_ans"] == "1"
    assert bench.questions[1].doc_ids == ["148748_0"] and bench.questions[3].meta["source"] == "rand"


def test_limit_keeps_the_cited_paragraphs(tmp_path):
    bench = archivalqa.load(write_csv(tmp_path / "ArchivalQA_test.csv", HEADER, ROWS), limit=2)
    assert len(bench.questions) == 2 and [d.external_id for d in bench.documents] == ["148748_0"]


def test_directory_of_split_csvs(tmp_path):
    write_csv(tmp_path / "ArchivalQA_train.csv", HEADER, ROWS[:1])
    write_csv(tmp_path / "ArchivalQA_val.csv", HEADER, ROWS[1:2])
    write_csv(tmp_path / "ArchivalQA_test.csv", HEADER, ROWS[2:])
    assert [q.id for q in archivalqa.load(tmp_path).questions] == ["test_2", "test_3"]
    assert [q.id for q in archivalqa.load(tmp_path, split="val").questions] == ["test_1"]


def test_other_text_columns_and_a_date_column(tmp_path):
    header = ["question", "answer", "para_id", "paragraph", "pub_date"]
    rows = [[r[1], r[2], r[5], r[6], "1988-05-26"] for r in ROWS[:2]]
    bench = archivalqa.load(write_csv(tmp_path / "sub_test.csv", header, rows))
    bench.validate()
    assert bench.documents[0].timestamp == "1988-05-26T00:00:00+00:00"
    assert [q.id for q in bench.questions] == ["sub_test-2", "sub_test-3"]     # file name and CSV row


def test_paragraph_text_joined_from_a_separate_file(tmp_path):
    header = ["id", "question", "answer", "para_id"]
    questions = write_csv(tmp_path / "ArchivalQA_test.csv", header, [[r[0], r[1], r[2], r[5]] for r in ROWS])
    with pytest.raises(ValueError, match="no paragraph text column.*paragraphs=PATH"):
        archivalqa.load(questions)
    paragraphs = write_csv(tmp_path / "paras.csv", ["para_id", "para_text"],
                           [["148748_0", P1], ["1839755_20", P2], ["1043631_15", P3]])
    bench = archivalqa.load(questions, paragraphs=paragraphs)
    bench.validate()
    assert bench.document("1043631_15").text == P3


def test_missing_column_is_refused(tmp_path):
    header = [h for h in HEADER if h != "para_id"]
    rows = [r[:5] + r[6:] for r in ROWS]
    path = write_csv(tmp_path / "ArchivalQA_test.csv", header, rows)
    with pytest.raises(ValueError) as err:
        archivalqa.load(path)
    message = str(err.value)
    assert message.startswith("archivalqa: ") and str(path) in message
    assert "'para_id'" in message and "expected" in message


def test_empty_answer_is_refused_with_its_row(tmp_path):
    rows = [list(r) for r in ROWS]
    rows[2][2] = ""
    with pytest.raises(ValueError, match=r"row 4.*empty 'answer'"):
        archivalqa.load(write_csv(tmp_path / "ArchivalQA_test.csv", HEADER, rows))


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(ValueError) as err:
        archivalqa.load(tmp_path / "ArchivalQA_test.csv")
    assert "archivalqa" in str(err.value) and "ArchivalQA_test.csv" in str(err.value)
    assert "no such file" in str(err.value)
