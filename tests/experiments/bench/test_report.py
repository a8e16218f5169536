"""The run's JSON document, the markdown report and its plots."""

from __future__ import annotations

import json

from experiments.bench.protocols import ROW_FIELDS
from experiments.bench.report import markdown, write_json, write_report

PNG = b"\x89PNG\r\n\x1a\n"
EXTRAS = {"n_questions", "em_by_type", "truncation_rate", "answer_flops_per_question", "encode_flops",
          "encode_seconds", "state_bytes", "method_config", "phase", "n_groups", "mean_context_tokens",
          "f1_before", "f1_after", "f1_drop"}


def test_json_has_exactly_the_documented_shape(full_run, tmp_path):
    path = write_json(full_run, tmp_path / "out" / "run.json")
    data = json.loads(path.read_text())
    assert list(data) == ["benchmark", "config", "results"]
    assert data["benchmark"] == "tiny-bios"
    assert {"methods", "protocols", "seed", "model", "non_embedding_params"} <= set(data["config"])
    assert data["results"]
    for row in data["results"]:
        assert tuple(row)[: len(ROW_FIELDS)] == ROW_FIELDS
        assert set(row) - set(ROW_FIELDS) <= EXTRAS
        assert isinstance(row["f1_by_type"], dict) and isinstance(row["method_config"], dict)
        for field in ("em", "f1", "latency_ms_p50", "latency_ms_p95", "tokens_per_question", "flops_per_question",
                      "peak_memory_mb", "bytes_per_doc"):
            assert isinstance(row[field], (int, float)), field


def test_report_writes_markdown_and_png_plots(full_run, tmp_path):
    written = write_report(full_run, tmp_path / "reports" / "bench.md")
    names = [p.name for p in written]
    assert names == ["bench.md", "bench_f1_vs_context.png", "bench_f1_vs_docs.png"]
    for image in written[1:]:
        assert image.read_bytes()[:8] == PNG and image.stat().st_size > 1000
    text = written[0].read_text()
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(full_run["results"]), "a header, then one row per result"
    assert "![bench_f1_vs_context](bench_f1_vs_context.png)" in text
    assert "retention/after" in text and "finetune" in text


def test_report_without_sweep_rows_draws_only_the_documents_plot(full_run, tmp_path):
    only_stream = dict(full_run, results=[r for r in full_run["results"] if r["protocol"] == "stream"])
    written = write_report(only_stream, tmp_path / "r.md")
    assert [p.name for p in written] == ["r.md", "r_f1_vs_docs.png"]
    assert "f1_vs_context" not in markdown(only_stream)
