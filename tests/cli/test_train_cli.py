"""Training from the command line on a user's own data: a SQuAD file and the generic JSONL, any model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from memkit import checkpoint
from memkit.adapters.generator import AdapterGenerator
from memkit.lm import FrozenLM
from memkit.slots import SlotModel

ROOT = Path(__file__).resolve().parents[2]
FACTS = [(f"Person{i} Varn", f"Town{i}") for i in range(16)]
SMALL_ADAPTER = ["--state-rank", "8", "--svd-rank", "2", "--chunk-tokens", "16", "--base-rank", "0", "--batch-size", "4",
                 "--warmup-steps", "1", "--eval-every", "2", "--eval-max", "3", "--max-steps", "2", "--minutes", "0"]
SMALL_SLOTS = ["--slots", "2", "--mem-dim", "16", "--prefix-len", "2", "--batch-size", "4", "--warmup-steps", "1",
               "--eval-every", "2", "--eval-max", "3", "--max-steps", "2", "--minutes", "0"]


@pytest.fixture
def squad_file(tmp_path):
    paragraphs = [{"context": f"{name} lives in {town}.",
                   "qas": [{"id": f"q{i}", "question": f"Where does {name} live?", "answers": [{"text": town}]}]}
                  for i, (name, town) in enumerate(FACTS)]
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "Bios", "paragraphs": paragraphs}]}))
    return path


@pytest.fixture
def generic_file(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps({"context": f"{n} lives in {t}.", "qa": [{"question": f"Where does {n} live?",
                                                                                  "answer": t}]}) + "\n"
                            for n, t in FACTS))
    return path


def test_a_generator_trains_on_a_squad_file_and_reloads(memkit, model_dir, squad_file, tmp_path):
    out = tmp_path / "gen"
    summary = memkit.json("train", "adapter", "--model", model_dir, "--data", f"squad:{squad_file}",
                          "--eval-fraction", "0.25", "--out", out, *SMALL_ADAPTER)
    assert summary["steps"] == 2 and {"adapter_f1", "closed_f1", "prompt_f1"} <= set(summary["final_probe"])
    saved = json.loads((out / "generator.json").read_text())
    assert saved["format"] == 2 and saved["data"]["data"] == [f"squad:{squad_file}"]
    source = saved["data"]["sources"][0]
    assert source["train_items"] + source["heldout_items"] == len(FACTS) and source["heldout_items"] > 0
    lm = FrozenLM.load(str(model_dir), device="cpu", dtype="float32")
    gen = AdapterGenerator.load(out, lm)
    assert any(p.b.weight.abs().sum() > 0 for p in gen.parts), "training moved B off zero"


def test_a_slot_model_trains_on_the_generic_jsonl_with_a_corpus(memkit, model_dir, generic_file, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The harbour of Port Elsin has a lighthouse on its northern mole.")
    out = tmp_path / "slots"
    summary = memkit.json("train", "slots", "--model", model_dir, "--data", f"jsonl:{generic_file}",
                          "--corpus", corpus, "--pretrain-steps", "1", "--out", out, *SMALL_SLOTS)
    assert summary["steps"] == 2 and "slots_f1" in summary["final_probe"]
    saved = json.loads((out / "slots.json").read_text())
    assert saved["data"]["corpus_documents"] == 1 and "by document" in saved["data"]["split"]
    lm = FrozenLM.load(str(model_dir), device="cpu", dtype="float32")
    model = SlotModel.load(out, lm)
    with torch.no_grad():
        assert model.read(lm, ["Person1 Varn lives in Town1."]).shape == (1, 2, 16)


def test_another_model_needs_its_own_data_and_never_replaces_the_packaged_one(memkit, model_dir, squad_file, tmp_path):
    result = memkit("train", "adapter", "--model", model_dir, "--out", tmp_path / "x", *SMALL_ADAPTER)
    assert result.exit_code == 2 and "--data" in result.stderr and "Traceback" not in result.stderr
    result = memkit("train", "adapter", "--model", model_dir, "--data", "squad:nowhere.json", "--out", tmp_path / "x",
                    *SMALL_ADAPTER)
    assert result.exit_code == 2 and "no such file" in result.stderr
    from memkit.methods.adapter import PACKAGED_GENERATOR

    before = (PACKAGED_GENERATOR / "generator.safetensors").read_bytes()
    result = memkit("train", "adapter", "--model", model_dir, "--data", f"squad:{squad_file}", "--eval-fraction",
                    "0.25", "--out", tmp_path / "g", "--install", *SMALL_ADAPTER)
    assert result.exit_code == 2 and "another base model" in result.stderr
    assert (PACKAGED_GENERATOR / "generator.safetensors").read_bytes() == before


# ---------------------------------------------------------------- crashes, resumption, several processes

def train_command(model_dir, data, out, *extra) -> list[str]:
    return [sys.executable, "-m", "cli.main", "train", "adapter", "--model", str(model_dir), "--data", f"jsonl:{data}",
            "--eval-fraction", "0.25", "--out", str(out), *SMALL_ADAPTER[:-4], "--eval-every", "1000", *extra]


def run_cli(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, **kw)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def tensors(out) -> dict[str, torch.Tensor]:
    return load_file(str(out / "generator.safetensors"))


@pytest.mark.integration
def test_kill_9_mid_training_loses_at_most_one_interval_and_resume_is_bit_identical(model_dir, generic_file, tmp_path):
    steps, every = 120, 5
    straight = tmp_path / "straight"
    run_cli(train_command(model_dir, generic_file, straight, "--max-steps", str(steps), "--minutes", "0"))

    out = tmp_path / "killed"
    proc = subprocess.Popen(train_command(model_dir, generic_file, out, "--max-steps", str(steps), "--minutes", "0",
                                          "--checkpoint-every", str(every)),
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    latest = out / "checkpoint" / "LATEST"
    deadline = time.time() + 300
    while not latest.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / "generator.safetensors").exists()
    saved = json.loads((out / "checkpoint" / latest.read_text().strip() / "state.json").read_text())
    assert saved["step"] % every == 0 and 0 < saved["step"] < steps

    result = run_cli(train_command(model_dir, generic_file, out, "--max-steps", str(steps), "--minutes", "0",
                                   "--checkpoint-every", str(every), "--resume", str(out / "checkpoint"), "--json"))
    summary = json.loads(result.stdout)
    assert summary["resumed_at"] >= saved["step"] and summary["steps"] == steps
    assert f"resumed from {out / 'checkpoint'}" in result.stderr
    kept = json.loads((out / "checkpoint" / "probe_before.json").read_text())
    assert "before training (probed when the run first started): " in result.stderr
    assert summary["before"] == kept and kept == json.loads(
        (straight / "training_log.json").read_text())["summary"]["before"]
    want, got = tensors(straight), tensors(out)
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    losses = [json.loads((d / "training_log.json").read_text())["loss_every_10"] for d in (straight, out)]
    assert losses[0] == losses[1]


def test_resume_with_other_options_is_one_line(memkit, model_dir, generic_file, tmp_path):
    out = tmp_path / "gen"
    first = memkit("train", "adapter", "--model", model_dir, "--data", f"jsonl:{generic_file}", "--out", out,
                   "--checkpoint-every", "1", *SMALL_ADAPTER)
    assert first.exit_code == 0, first.stderr
    assert (out / "checkpoint" / "LATEST").is_file()
    result = memkit("train", "adapter", "--model", model_dir, "--data", f"jsonl:{generic_file}", "--out", out,
                    *SMALL_ADAPTER, "--lr", "0.5", "--resume", out / "checkpoint")
    assert result.exit_code == 2 and "--lr" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()[-1]) > 20
    result = memkit("train", "adapter", "--model", model_dir, "--data", f"jsonl:{generic_file}", "--out", out,
                    *SMALL_ADAPTER, "--resume", tmp_path / "nowhere")
    assert result.exit_code == 2 and "no such directory" in result.stderr
    # the run's --out folder names its checkpoints too: same refusal, from the same checkpoint
    result = memkit("train", "adapter", "--model", model_dir, "--data", f"jsonl:{generic_file}", "--out", out,
                    *SMALL_ADAPTER, "--lr", "0.5", "--resume", out)
    assert result.exit_code == 2 and "--lr" in result.stderr and str(out / "checkpoint") in result.stderr
    assert checkpoint.find(out) == checkpoint.find(out / "checkpoint")


@pytest.mark.integration
def test_two_processes_train_as_one_process_with_two_micro_batches(model_dir, generic_file, tmp_path):
    two, accum = tmp_path / "two", tmp_path / "accum"
    result = run_cli(train_command(model_dir, generic_file, two, "--max-steps", "4", "--minutes", "0",
                                   "--num-processes", "2"))
    assert "training in 2 processes" in result.stderr and "Traceback" not in result.stderr
    run_cli(train_command(model_dir, generic_file, accum, "--max-steps", "4", "--minutes", "0", "--grad-accum", "2"))
    a, b = tensors(two), tensors(accum)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6), k
    assert any(k.endswith("b.weight") and a[k].abs().sum() > 0 for k in a), "training moved B off zero"
    assert json.loads((two / "generator.json").read_text())["summary"]["processes"] == 2


def test_resume_refuses_other_data_and_damaged_checkpoints_in_one_line(memkit, model_dir, generic_file, squad_file,
                                                                       tmp_path):
    out = tmp_path / "gen"
    first = memkit("train", "adapter", "--model", model_dir, "--data", f"jsonl:{generic_file}", "--out", out,
                   "--checkpoint-every", "1", *SMALL_ADAPTER)
    assert first.exit_code == 0, first.stderr
    other = memkit("train", "adapter", "--model", model_dir, "--data", f"squad:{squad_file}", "--eval-fraction", "0.25",
                   "--out", out, *SMALL_ADAPTER, "--max-steps", "3", "--resume", out / "checkpoint")
    assert other.exit_code == 2 and "other data" in other.stderr and "--data" in other.stderr
    assert "Traceback" not in other.stderr
    folder = out / "checkpoint" / (out / "checkpoint" / "LATEST").read_text().strip()
    (folder / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes()[:40])
    torn = memkit("train", "adapter", "--model", model_dir, "--data", f"jsonl:{generic_file}", "--out", out,
                  *SMALL_ADAPTER, "--max-steps", "3", "--resume", out / "checkpoint")
    assert torn.exit_code == 2 and "cannot be read" in torn.stderr and "Traceback" not in torn.stderr
    assert "before training" not in torn.stderr or "cannot be read" in torn.stderr


def test_a_corpus_needs_pretraining_steps(memkit, model_dir, generic_file, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The harbour of Port Elsin has a lighthouse.")
    result = memkit("train", "slots", "--model", model_dir, "--data", f"jsonl:{generic_file}", "--corpus", corpus,
                    "--out", tmp_path / "s", *SMALL_SLOTS)
    assert result.exit_code == 2 and "--pretrain-steps" in result.stderr and "Traceback" not in result.stderr


def test_install_refuses_a_packaged_model_of_other_weights_and_leaves_checkpoints_out(tmp_path):
    from memkit.recipes.common import check_installable, install_copy
    from memkit.errors import ConfigError

    def saved(path, base, weights):
        path.mkdir(parents=True)
        (path / "generator.json").write_text(json.dumps({"config": {"base_model": base, "base_weights": weights}}))
        (path / "generator.safetensors").write_bytes(b"w")
        return path

    dest = saved(tmp_path / "packaged", "fp", "bf16:aaa")
    with pytest.raises(ConfigError, match="another base model"):
        check_installable(("fp", "bf16:bbb"), dest, "generator.json", tmp_path / "out")
    out = saved(tmp_path / "out", "fp", "bf16:aaa")
    (out / "checkpoint").mkdir()
    (out / "checkpoint" / "LATEST").write_text("step-1\n")
    assert install_copy(out, dest, "generator.json") == dest
    assert (dest / "generator.json").is_file() and not (dest / "checkpoint").exists()
    assert not any(p.name.startswith(".packaged") for p in tmp_path.iterdir())
