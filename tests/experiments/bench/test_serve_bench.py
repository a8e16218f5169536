"""The serve benchmark's smoke run (``--quick``, rag only): real ``memkit init``/``serve``/``ask`` processes on
loopback, so it is slow (about 30 s on 2 CPUs); the numbers are only checked to be there and consistent."""

from __future__ import annotations

import json

import pytest

from experiments.bench.serve import main


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quick_serve_benchmark_reports_every_number(tmp_path, capsys):
    out = tmp_path / "serve.json"
    assert main(["--quick", "--methods", "rag", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["seed"] == 0 and result["machine"]["cpu_count"] and result["command"][-1] == str(out)
    rag = result["methods"]["rag"]
    assert "error" not in rag, rag.get("error")

    assert rag["startup"]["first_answer_s"] > 0
    assert rag["startup"]["first_answer_s"] >= rag["startup"]["listening_s"]
    assert rag["baseline"]["questions"] == 1 and rag["baseline"]["throughput"] > 0

    assert [level["clients"] for level in rag["load"]] == [1, 4]
    for level in rag["load"]:
        assert level["answers"] > 0 and level["throughput"] > 0, level
        assert level["p99_ms"] >= level["p50_ms"] > 0, level
        assert level["mean_batch_size"] >= 1 and level["errors_total"] == 0, level

    ingest = rag["ingest"]
    for job in (ingest["alone"], ingest["under_load"]):
        assert job["status"] == "done" and job["added"] == job["documents"] > 0, job
        assert job["documents_per_second"] > 0
    asks = ingest["asks_during_ingest"]
    assert asks["errors"] == 0 and (asks["answers"] == 0 or asks["p99_ms"] >= asks["p50_ms"])

    targets = rag["targets"]
    assert targets["speedup"]["value"] > 0 and targets["tail"]["value"] > 0
    assert "| rag | 4 |" in capsys.readouterr().out
