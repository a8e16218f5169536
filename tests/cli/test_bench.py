"""``memkit bench`` end to end in-process: a SQuAD-format file, a tiny model, JSON and a report."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cli.main import app



SQUAD = {"version": "1.1", "data": [
    {"title": "Harbour", "paragraphs": [
        {"context": "Ada Varn is a lighthouse keeper who lives in Port Elsin.",
         "qas": [{"id": "a1", "question": "Where does Ada Varn live?",
                  "answers": [{"text": "Port Elsin", "answer_start": 45}]}]},
        {"context": "Tomas Brell is a cartographer born in Kessin.",
         "qas": [{"id": "b1", "question": "Where was Tomas Brell born?",
                  "answers": [{"text": "Kessin", "answer_start": 38}]}]},
        {"context": "Mira Okonde leads the Harbour Trust of the northern coast.",
         "qas": [{"id": "c1", "question": "Who leads the Harbour Trust?",
                  "answers": [{"text": "Mira Okonde", "answer_start": 0}]}]}]}]}
FAST = ["-o", "closed.max_new_tokens=3", "-o", "prompt.max_new_tokens=3", "-o", "finetune.max_new_tokens=3",
        "-o", "finetune.max_tokens=64"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_bench_runs_on_a_squad_file(tmp_path, model_dir):
    pytest.importorskip("memkit.datasets.loaders", reason="the dataset loaders have not landed yet")
    data = tmp_path / "dev.json"
    data.write_text(json.dumps(SQUAD))
    out = tmp_path / "run.json"
    result = invoke("bench", "squad", "--data", data, "--model", model_dir,
                    "--methods", "closed,prompt:oracle,finetune", "--protocol", "stream,retention", "--json", out, "--report", tmp_path / "rep" / "bench.md", *FAST)
    assert result.exit_code == 0, result.output + result.stderr
    assert "memkit bench squad" in result.stdout and "finetune" in result.stdout
    # stderr is no terminal here: progress comes as log lines, a line per method and a last one with the count
    # (per method 3 stream answers and 2 retention questions asked twice; 3 methods: 21)
    lines = result.stderr.splitlines()
    assert any("closed_book starts" in line for line in lines) and any("finetune starts" in line for line in lines)
    assert any(line.endswith("] done: 21/21 answers") for line in lines), result.stderr
    report = json.loads(out.read_text())
    assert list(report) == ["benchmark", "config", "results"]
    assert {(r["method"], r["setting"]) for r in report["results"]} == {
        ("closed_book", "none"), ("prompt", "oracle"), ("finetune", "parametric")}
    assert {r["protocol"] for r in report["results"]} == {"stream", "retention"}
    assert all(r["n_questions"] >= 1 for r in report["results"])
    assert (tmp_path / "rep" / "bench.md").is_file() and (tmp_path / "rep" / "bench_f1_vs_docs.png").is_file()


def test_bench_json_to_stdout(tmp_path, model_dir):
    pytest.importorskip("memkit.datasets.loaders", reason="the dataset loaders have not landed yet")
    data = tmp_path / "dev.json"
    data.write_text(json.dumps(SQUAD))
    result = invoke("bench", "squad", "--data", data, "--model", model_dir, "--methods", "closed", "--json", "-",
                    *FAST[:2])
    assert result.exit_code == 0, result.output + result.stderr
    assert json.loads(result.stdout)["results"][0]["method"] == "closed_book"


@pytest.mark.parametrize("args,message", [
    (["squad", "--model", "MODEL"], "--data"),
    (["squad", "--data", "DATA", "--model", "MODEL", "--methods", "rag:oracle"], "no setting 'oracle'"),
    (["squad", "--data", "DATA", "--model", "MODEL", "--protocol", "daily"], "unknown protocol"),
    (["squad", "--data", "DATA", "--model", "MODEL", "-o", "steps=3"], "METHOD.OPTION=VALUE"),
    (["squad", "--data", "DATA", "--model", "MODEL", "-o", "finetune.rank=0"], "rank"),
    (["nosuch", "--model", "MODEL"], "unknown benchmark"),
])
def test_bench_mistakes_are_one_line(tmp_path, model_dir, args, message):
    if "squad" in args or "nosuch" in args:
        pytest.importorskip("memkit.datasets.loaders", reason="the dataset loaders have not landed yet")
    data = tmp_path / "dev.json"
    data.write_text(json.dumps(SQUAD))
    args = [str(data) if a == "DATA" else str(model_dir) if a == "MODEL" else a for a in args]
    result = invoke("bench", *args)
    assert result.exit_code == 2, result.output + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_finetune_store_through_the_cli(tmp_path, model_dir, memkit):
    doc = tmp_path / "a.txt"
    doc.write_text("Ada Varn is a lighthouse keeper who lives in Port Elsin.\n")
    assert memkit("init", "--model", model_dir, "--method", "finetune", "-o", "steps=2",
                  "-o", "max_new_tokens=4").exit_code == 0
    assert memkit("ingest", doc).exit_code == 0
    first = memkit.json("ask", "Where does Ada Varn live?")
    second = memkit.json("ask", "Where does Ada Varn live?")
    assert first["answer"] == second["answer"] and first["sources"] == []
    assert "cannot say which documents" in first["info"]["sources_note"]
    assert memkit.json("stats")["state_bytes"] > 0
    plain = memkit("ask", "Where does Ada Varn live?")
    assert "sources: none (fine-tuned weights" in plain.stdout


def test_bench_world_with_a_given_model(tmp_path, model_dir):
    pytest.importorskip("experiments.world.export", reason="the synthetic world has not landed yet")
    out = tmp_path / "world.json"
    result = invoke("bench", "world", "--model", model_dir, "--n-docs", 3, "--methods", "closed,prompt:oracle",
                    "--seed", 1, "--json", out, "-o", "closed.max_new_tokens=2", "-o", "prompt.max_new_tokens=2")
    assert result.exit_code == 0, result.output + result.stderr
    report = json.loads(out.read_text())
    assert report["benchmark"] == "world-test" and report["config"]["seed"] == 1
    assert all(r["n_docs"] == 3 and r["n_questions"] > 0 for r in report["results"])


def test_bench_world_without_a_packaged_model_says_so(tmp_path, monkeypatch):
    import memkit.defaults

    monkeypatch.setattr(memkit.defaults, "PACKAGED_MODEL", tmp_path / "absent")
    result = invoke("bench", "world", "--methods", "closed")
    assert result.exit_code != 0
    assert "no packaged default model" in result.output + result.stderr
