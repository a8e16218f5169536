"""Memory slots from the command line: train a (tiny) slot model on the world recipe, then init, ingest, ask."""

from __future__ import annotations

import json

TEXTS = ["Ada Varn lives in Port Elsin and keeps the lighthouse there.",
         "Tomas Brell draws maps in Kessin for the Sorrel Company.",
         "Mira Okonde leads the Harbour Trust of the northern coast."]


def test_cli_trains_a_slot_model_and_a_slots_store_answers_with_sources(memkit, model_dir, tmp_path):
    out = tmp_path / "slots"
    summary = memkit.json("train", "slots", "--model", model_dir, "--data", "world", "--out", out, "--max-steps", "2",
                          "--minutes", "0",
                          "--batch-size", "2", "--slots", "2", "--mem-dim", "16", "--prefix-len", "2",
                          "--eval-every", "1", "--warmup-steps", "1")
    assert summary["steps"] == 2 and set(summary["final_probe"]) >= {"slots_f1", "recall_at_1", "closed_f1"}
    assert (out / "slots.json").is_file() and (out / "training_log.json").is_file()
    saved = json.loads((out / "slots.json").read_text())
    assert saved["config"]["slots"] == 2 and saved["training"]["objective"] == "memory-aware"
    bad = memkit("train", "slots", "--model", model_dir, "--out", out, "--objective", "mac", "--max-steps", "1")
    assert bad.exit_code != 0 and "objective" in bad.output + bad.stderr

    r = memkit("init", "--model", model_dir, "--method", "slots", "-o", f"model={out}", "-o", "top_k=2")
    assert r.exit_code == 0, r.output + r.stderr
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": t, "id": f"d{i}"}) + "\n" for i, t in enumerate(TEXTS)))
    assert memkit("ingest", docs).exit_code == 0
    answer = memkit.json("ask", "Who leads the Harbour Trust?")
    assert answer["method"] == "slots" and len(answer["sources"]) == 2 and answer["info"]["memories"] == 2


def test_cli_trains_the_hybrids_slot_model_with_an_adapter_and_a_hybrid_store_answers(memkit, model_dir,
                                                                                      tiny_generator_dir, tmp_path):
    out = tmp_path / "hybrid-slots"
    summary = memkit.json("train", "slots", "--model", model_dir, "--data", "world", "--out", out, "--max-steps", "2",
                          "--minutes", "0",
                          "--batch-size", "2", "--slots", "2", "--mem-dim", "16", "--prefix-len", "2",
                          "--eval-every", "2", "--warmup-steps", "1", "--with-adapter", tiny_generator_dir)
    assert set(summary["final_probe"]) >= {"slots_f1", "hybrid_f1", "adapter_f1", "closed_f1"}
    assert json.loads((out / "slots.json").read_text())["training"]["with_adapter"] == str(tiny_generator_dir)
    bad = memkit("train", "slots", "--model", model_dir, "--data", "world", "--out", tmp_path / "x", "--max-steps", "1",
                 "--with-adapter", tmp_path / "nowhere")
    assert bad.exit_code != 0

    r = memkit("init", "--model", model_dir, "--method", "hybrid", "-o", f"model={out}",
               "-o", f"generator={tiny_generator_dir}", "-o", "chunk_tokens=16", "-o", "top_k=2", "-o", "top_n=2")
    assert r.exit_code == 0, r.output + r.stderr
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": t, "id": f"d{i}"}) + "\n" for i, t in enumerate(TEXTS)))
    assert memkit("ingest", docs).exit_code == 0
    answer = memkit.json("ask", "Who leads the Harbour Trust?")
    assert answer["method"] == "hybrid" and answer["info"]["memories"] == 2 and answer["sources"]
    merged = answer["info"]["merged_documents"]
    assert [s["weight"] is not None for s in answer["sources"]] == [i < merged for i in range(len(answer["sources"]))]
    shown = memkit("ask", "Who leads the Harbour Trust?").output.splitlines()
    lines = [line for line in shown if line.strip().startswith("[")]
    assert len(lines) == len(answer["sources"])
    assert all(("weight" in line) == (i < merged) for i, line in enumerate(lines))   # merged ones carry weights
