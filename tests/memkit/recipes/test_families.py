"""Bring your own model and data: ``memkit train adapter|slots --model DIR --data squad:FILE|jsonl:FILE`` trains on
a tiny random model of every family. The loss falls on a small fixed batch, the saved artifact reloads to the
same outputs as the model that was trained, and the base model's weights are bit-identical before and after."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import memkit.recipes.adapter as adapter_recipe
import memkit.recipes.slots as slots_recipe
from cli.main import app
from experiments.tiny_model import FAMILIES
from memkit.adapters.encode import encode_documents
from memkit.adapters.generator import AdapterGenerator
from memkit.adapters.state import AdapterState
from memkit.slots import SlotModel

TRAIN = [("Ada Varn", "Port Elsin"), ("Bo Kell", "Dunmere"), ("Cy Rone", "Harnby"), ("Di Moss", "Kessin")]
HELD = [("Ed Lark", "Sorrel"), ("Fay Noon", "Brell")]
STEPS = 30
ADAPTER = ["--state-rank", "8", "--svd-rank", "2", "--chunk-tokens", "16", "--base-rank", "2", "--batch-size", "4",
           "--lr", "0.05", "--w-contrast", "0", "--warmup-steps", "1", "--eval-every", "1000", "--eval-max", "2",
           "--max-steps", str(STEPS), "--minutes", "0"]
SLOTS = ["--slots", "2", "--mem-dim", "16", "--prefix-len", "2", "--batch-size", "4", "--lr", "0.01",
         "--warmup-steps", "1", "--eval-every", "1000", "--eval-max", "2", "--max-steps", str(STEPS), "--minutes", "0"]
DOC = "Ada Varn lives in Port Elsin."
QUESTION = "Question: Where does Ada Varn live?\nAnswer:"

# Every family and both formats run in the default tier: the 20 cases take about 20 s on 2 CPU cores.
CASES = [pytest.param(family, fmt, id=f"{family}-{fmt}") for family in FAMILIES for fmt in ("squad", "jsonl")]


def write_squad(path: Path, facts) -> Path:
    paragraphs = [{"context": f"{name} lives in {town}.",
                   "qas": [{"id": f"q{i}", "question": f"Where does {name} live?", "answers": [{"text": town}]}]}
                  for i, (name, town) in enumerate(facts)]
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "Bios", "paragraphs": paragraphs}]}))
    return path


def write_jsonl(path: Path, facts) -> Path:
    path.write_text("".join(json.dumps({"context": f"{n} lives in {t}.",
                                        "qa": [{"question": f"Where does {n} live?", "answer": t}]}) + "\n"
                            for n, t in facts))
    return path


def data_options(tmp_path: Path, fmt: str) -> list[str]:
    write = write_squad if fmt == "squad" else write_jsonl
    ext = "json" if fmt == "squad" else "jsonl"
    train, held = write(tmp_path / f"train.{ext}", TRAIN), write(tmp_path / f"held.{ext}", HELD)
    return ["--data", f"{fmt}:{train}", "--eval-data", f"{fmt}:{held}"]


def weights_hash(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def files_hash(directory: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(directory.rglob("*")):
        if f.is_file():
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def train(monkeypatch, recipe, method: str, model_dir: Path, out: Path, options: list[str]):
    """Run ``memkit train METHOD`` in-process; returns the trained model as it was in memory, the LM the command
    loaded, that LM's weights hash before training, and the summary."""
    seen = {}
    real_build = recipe.build

    def build(lm, cfg, log=print):
        seen["lm"], seen["before"] = lm, weights_hash(lm.model)
        seen["model"] = real_build(lm, cfg, log)
        return seen["model"]

    monkeypatch.setattr(recipe, "build", build)
    result = CliRunner().invoke(app, ["train", method, "--model", str(model_dir), "--out", str(out), *options,
                                      "--json"])
    assert result.exit_code == 0, result.output + result.stderr
    return seen["model"], seen["lm"], seen["before"], json.loads(result.stdout)


def assert_loss_fell(out: Path, summary: dict):
    log = json.loads((out / "training_log.json").read_text())
    losses = log["loss_every_10"]
    assert summary["steps"] == STEPS and len(losses) == 3
    assert losses[-1] < losses[0] - 0.1, losses


@pytest.mark.parametrize("family,fmt", CASES)
def test_an_adapter_generator_trains_on_any_family(tiny_model_dir, tmp_path, monkeypatch, family, fmt):
    model_dir = tiny_model_dir(family)
    on_disk = files_hash(model_dir)
    out = tmp_path / "gen"
    gen, lm, before, summary = train(monkeypatch, adapter_recipe, "adapter", model_dir, out,
                                     [*data_options(tmp_path, fmt), *ADAPTER])
    assert_loss_fell(out, summary)
    assert weights_hash(lm.model) == before and files_hash(model_dir) == on_disk
    assert (out / "checkpoint").is_dir()
    saved = json.loads((out / "generator.json").read_text())
    assert saved["data"]["data"][0].startswith(f"{fmt}:")

    loaded = AdapterGenerator.load(out, lm)
    gen.eval()
    with torch.no_grad():
        for a, b in zip(gen.state_dict().values(), loaded.state_dict().values()):
            assert torch.equal(a, b)
        states = [AdapterState.total(encode_documents(lm, g, [DOC], chunk_tokens=16)) for g in (gen, loaded)]
        deltas = [g.delta(s) for g, s in zip((gen, loaded), states)]
        for name, (a, b) in deltas[0].factors.items():
            assert torch.equal(a, deltas[1].factors[name][0]) and torch.equal(b, deltas[1].factors[name][1])
        logits = [lm.logits([QUESTION], delta=d)[0] for d in deltas]
        assert torch.equal(logits[0], logits[1])
        assert not torch.equal(logits[0], lm.logits([QUESTION])[0])     # the trained delta does something


@pytest.mark.parametrize("family,fmt", CASES)
def test_a_slot_model_trains_on_any_family(tiny_model_dir, tmp_path, monkeypatch, family, fmt):
    model_dir = tiny_model_dir(family)
    on_disk = files_hash(model_dir)
    out = tmp_path / "slots"
    model, lm, before, summary = train(monkeypatch, slots_recipe, "slots", model_dir, out,
                                       [*data_options(tmp_path, fmt), *SLOTS])
    assert_loss_fell(out, summary)
    assert weights_hash(lm.model) == before and files_hash(model_dir) == on_disk

    loaded = SlotModel.load(out, lm)
    model.eval()
    with torch.no_grad():
        for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
            assert torch.equal(a, b)
        memories = [m.read(lm, [DOC]) for m in (model, loaded)]
        assert torch.equal(memories[0], memories[1])
        questions = [m.read(lm, [QUESTION]) for m in (model, loaded)]
        prefixes = []
        for m, q, mem in zip((model, loaded), questions, memories):
            score = m.key(q) @ m.key(mem).T
            prefixes.append(m.prefix(m.aggregate(q, mem[None], score, torch.ones_like(score, dtype=torch.bool))))
        logits = [lm.logits([QUESTION], prefix=p)[0] for p in prefixes]
        assert torch.equal(logits[0], logits[1])
