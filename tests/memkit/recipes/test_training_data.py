"""Training data from any source: specs, items, the held-out split by document, mixing, the corpus."""

from __future__ import annotations

import itertools
import json

import pytest

from memkit.recipes.data import (
    benchmark_items,
    document_key,
    generic_items,
    load_data,
    parse_spec,
    split_by_document,
)
from memkit.errors import ConfigError
from experiments.world import adapter_data

FACTS = [(f"Person{i} Varn", f"Town{i}", f"job{i}") for i in range(40)]


def write_squad(path, n=40):
    paragraphs = [{"context": f"{name} lives in {town} and works as a {job}.",
                   "qas": [{"id": f"q{i}a", "question": f"Where does {name} live?", "answers": [{"text": town}]},
                           {"id": f"q{i}b", "question": f"What is {name}'s job?", "answers": [{"text": job}]}]}
                  for i, (name, town, job) in enumerate(FACTS[:n])]
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "Bios", "paragraphs": paragraphs}]}))
    return path


def write_generic(path, n=40):
    rows = [{"context": f"{name} lives in {town}.", "qa": [{"question": f"Where does {name} live?", "answer": town}]}
            for name, town, _ in FACTS[:n]]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_specs_name_their_flag_when_wrong(tmp_path):
    assert str(parse_spec("world")) == "world" and parse_spec("world:7").seed == 7
    (tmp_path / "a.json").write_text("{}")
    assert parse_spec(f"squad:{tmp_path / 'a.json'}").path == str(tmp_path / "a.json")
    for bad, words in [("nosuch:x", "unknown source 'nosuch'"), ("squad", "squad:PATH"),
                       (f"squad:{tmp_path / 'missing.json'}", "no such file"), ("world:x", "whole-number seed")]:
        with pytest.raises(ConfigError, match="--eval-data") as err:
            parse_spec(bad, "--eval-data")
        assert words in str(err.value)


def test_a_squad_file_becomes_items_of_a_paragraph_and_its_questions(tmp_path):
    from memkit.datasets.loaders import load_benchmark

    bench = load_benchmark("squad", write_squad(tmp_path / "s.json", 3))
    items, skipped = benchmark_items(bench, max_questions=1)
    assert skipped == 0 and len(items) == 6  # two questions per paragraph, one per item
    assert items[0].documents == [f"{FACTS[0][0]} lives in {FACTS[0][1]} and works as a {FACTS[0][2]}."]
    assert items[0].qas == [(f"Where does {FACTS[0][0]} live?", FACTS[0][1])]
    items, _ = benchmark_items(bench, max_questions=4)
    assert len(items) == 3 and all(len(it.qas) == 2 for it in items)


def test_the_generic_jsonl_format_and_its_errors(tmp_path):
    items = generic_items(write_generic(tmp_path / "g.jsonl", 3), max_questions=4)
    assert [it.qas[0][1] for it in items] == [f[1] for f in FACTS[:3]]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"context": "x", "qa": [{"question": "q"}]}) + "\n")
    with pytest.raises(ConfigError, match=r"line 1, qa\[0\].*missing field 'answer'"):
        generic_items(bad, 4)


def test_the_split_holds_out_whole_documents(tmp_path):
    from memkit.datasets.loaders import load_benchmark

    items, _ = benchmark_items(load_benchmark("squad", write_squad(tmp_path / "s.json")), max_questions=1)
    train, held, dropped = split_by_document(items, 0.25, seed=3)
    assert held and train and dropped == 0 and len(train) + len(held) == len(items)
    held_docs = {document_key(d) for it in held for d in it.documents}
    assert not held_docs & {document_key(d) for it in train for d in it.documents}
    again = split_by_document(items, 0.25, seed=3)
    assert again[1] == held and split_by_document(items, 0.25, seed=4)[1] != held


def test_load_data_mixes_sources_and_never_trains_on_what_it_evaluates(tmp_path):
    squad_file = write_squad(tmp_path / "s.json")
    generic = write_generic(tmp_path / "g.jsonl")
    data = load_data([f"squad:{squad_file}", f"jsonl:{generic}"], seed=0, eval_fraction=0.2, eval_max=10)
    assert 0 < len(data.heldout) <= 10
    held_docs = {document_key(d) for it in data.heldout for d in it.documents}
    seen = list(itertools.islice(data.stream, 400))
    assert not held_docs & {document_key(d) for it in seen for d in it.documents}
    assert {"works as" in it.documents[0] for it in seen} == {True, False}  # both sources feed the stream
    same = load_data([f"squad:{squad_file}", f"jsonl:{generic}"], seed=0, eval_fraction=0.2, eval_max=10)
    assert list(itertools.islice(same.stream, 50)) == seen[:50]  # seeded
    assert [s["spec"] for s in data.summary["sources"]] == [f"squad:{squad_file}", f"jsonl:{generic}"]
    assert data.calibration and "by document" in data.summary["split"]


def test_eval_data_is_held_out_and_its_documents_dropped_from_training(tmp_path):
    squad_file = write_squad(tmp_path / "s.json", 10)
    evals = write_generic(tmp_path / "e.jsonl", 3)  # other texts: nothing dropped
    data = load_data([f"squad:{squad_file}"], eval_specs=[f"jsonl:{evals}"])
    assert len(data.heldout) == 3 and data.summary["sources"][0]["dropped_items_sharing_documents"] == 0
    from memkit.datasets.loaders import load_benchmark

    bench = load_benchmark("squad", squad_file)
    shared = tmp_path / "shared.jsonl"  # the first paragraph asked again: its items leave the training stream
    shared.write_text(json.dumps({"context": bench.documents[0].text, "qa": [{"question": "q", "answer": "a"}]}) + "\n")
    data = load_data([f"squad:{squad_file}"], eval_specs=[f"jsonl:{shared}"], max_questions=1)
    assert data.summary["sources"][0]["dropped_items_sharing_documents"] == 2
    assert all(bench.documents[0].text not in it.documents for it in itertools.islice(data.stream, 100))


def test_the_corpus_is_read_by_memkits_reader(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.txt").write_text("Plain text about the harbour.")
    (tmp_path / "c" / "b.jsonl").write_text(json.dumps({"text": "A line of a stream."}) + "\n{oops\n")
    data = load_data(["world"], corpus=[str(tmp_path / "c")], world=adapter_data)
    assert sorted(data.corpus) == ["A line of a stream.", "Plain text about the harbour."]
    assert len(data.summary["corpus_refused"]) == 1 and "b.jsonl:2" in data.summary["corpus_refused"][0]
    with pytest.raises(ConfigError, match="--corpus"):
        load_data(["world"], corpus=[str(tmp_path / "nothing-here")], world=adapter_data)


def test_without_data_or_held_out_items_the_error_names_the_flag(tmp_path):
    with pytest.raises(ConfigError, match="--data"):
        load_data([])
    with pytest.raises(ConfigError, match="--eval-fraction"):
        load_data([f"squad:{write_squad(tmp_path / 's.json', 2)}"], eval_fraction=0.0)


def test_the_self_supervised_steps_read_the_corpus_first(tmp_path):
    from memkit.recipes.data import item_stream

    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"context": f"P{i} lives in T{i}.", "qa": [{"question": f"Where does P{i} live?",
                                                                                "answer": f"T{i}"}]}) + "\n"
                          for i in range(20)))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The harbour has a lighthouse.")
    data = load_data([f"jsonl:{qa}"], corpus=[str(corpus)])
    items = list(itertools.islice(item_stream(data, 2, 3, 0), 8))
    assert [it.documents for it in items[:6]] == [["The harbour has a lighthouse."]] * 6
    assert all(not it.qas for it in items[:6]) and all(it.qas for it in items[6:])
    plain = load_data([f"jsonl:{qa}"])
    assert next(item_stream(plain, 2, 3, 0)).qas                     # no corpus: the items' own documents


def test_a_long_corpus_text_is_read_in_pieces_that_keep_every_word(tmp_path):
    from memkit.recipes.data import corpus_pieces, item_stream

    book = "\n".join(" ".join(f"w{line}_{i}" for i in range(line % 40 + 1)) for line in range(300)) + "\n" + "x" * 250
    pieces = corpus_pieces([book, "short text"], 100)
    assert all(0 < len(p) <= 100 for p in pieces) and len(pieces) > 50
    assert "".join("".join(p.split()) for p in pieces) == "".join(book.split()) + "shorttext"
    corpus = tmp_path / "book.txt"
    corpus.write_text(book)
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"context": f"P{i} lives in T{i}.", "qa": [{"question": f"Where does P{i} live?",
                                                                                "answer": f"T{i}"}]}) + "\n"
                          for i in range(20)))
    data = load_data([f"jsonl:{qa}"], corpus=[str(corpus)])
    first = list(itertools.islice(item_stream(data, 2, 3, 0, piece_chars=100), 6))
    assert all(len(it.documents[0]) <= 100 for it in first)


def test_corpus_texts_that_are_held_out_documents_are_never_trained_on(tmp_path):
    qa = tmp_path / "qa.jsonl"
    contexts = [f"P{i} lives in T{i}." for i in range(20)]
    qa.write_text("".join(json.dumps({"context": c, "qa": [{"question": "Where?", "answer": "T"}]}) + "\n"
                          for c in contexts))
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": c}) + "\n" for c in contexts))
    data = load_data([f"jsonl:{qa}"], corpus=[str(corpus)], eval_fraction=0.2)
    held = {d for it in data.heldout for d in it.documents}
    assert held and not held & set(data.corpus)
    assert data.summary["corpus_heldout_dropped"] == len(held) and len(data.corpus) == 20 - len(held)
