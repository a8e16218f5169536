"""Export: JSONL memkit ingests as is, questions that parse, a valid benchmark, one line per CLI mistake."""

from __future__ import annotations

import json

from experiments.world.__main__ import main
from experiments.world.export import export_split, load_world_benchmark
from memkit.errors import InputError
from memkit.documents import SourceDocument
from memkit.sources import iter_sources

from worldhelpers import SMALL


def test_export_round_trip_is_ingestible(tmp_path):
    counts = export_split(SMALL, "test", tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "documents.jsonl").read_text().splitlines()]
    assert len(rows) == counts["documents"] >= SMALL.n_test
    for row in rows:
        assert {"id", "text", "timestamp", "source", "entity", "kind", "split"} <= row.keys()
        assert row["split"] == "test" and row["source"].startswith(f"world:{row['kind']}:")
    items = list(iter_sources([str(tmp_path / "documents.jsonl")]))
    assert not [i for i in items if isinstance(i, InputError)]
    docs = [i for i in items if isinstance(i, SourceDocument)]
    assert [d.external_id for d in docs] == [r["id"] for r in rows]
    assert docs[0].meta["kind"] == rows[0]["kind"]
    assert docs[0].timestamp == rows[0]["timestamp"] + "T00:00:00+00:00"  # dates normalised to UTC datetimes
    qs = [json.loads(line) for line in (tmp_path / "questions.jsonl").read_text().splitlines()]
    ids = {r["id"] for r in rows}
    assert len(qs) == counts["questions"] and all(set(q["doc_ids"]) <= ids and q["answers"] for q in qs)
    meta = json.loads((tmp_path / "world.json").read_text())
    assert meta["config"]["n_test"] == SMALL.n_test and meta["counts"]["documents"] == len(rows)


def test_benchmark_is_valid_and_typed():
    bench = load_world_benchmark(SMALL, "test")
    bench.validate()
    assert {q.type for q in bench.questions} == {"single", "current", "as_of", "two_hop"}
    as_of = [q for q in bench.questions if q.type == "as_of"]
    assert all(q.timestamp and q.timestamp in q.question for q in as_of)
    assert all(bench.document(q.doc_ids[0]).meta["split"] == "test" for q in bench.questions)


def test_cli_exports_and_reports_mistakes_in_one_line(tmp_path, capsys):
    assert main(["export", "--split", "test", "--out", str(tmp_path), "--n-test", "20", "--n-train", "10",
                 "--n-pretrain", "10"]) == 0
    assert "memkit ingest" in capsys.readouterr().out and (tmp_path / "documents.jsonl").exists()
    assert main(["export", "--out", str(tmp_path), "--update-prob", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--update-prob" in err
