"""``experiments.checkpoints.snapshot``: a saved generator or slot model kept as bfloat16 loads back as float32
with the same weights up to bfloat16's rounding, the same config and training record, and a valid digest."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from experiments.checkpoints.snapshot import main, snapshot
from memkit.adapters.generator import AdapterGenerator
from memkit.slots.model import SlotModel

RECORD = {"training": {"lr": 0.001, "max_steps": 7}, "data": {"data": ["squad:x.json"]}, "summary": {"steps": 7}}


@pytest.fixture(params=["generator", "slots"])
def run_dir(request, tiny_generator_dir, tiny_slot_dir, tiny_lm, tmp_path):
    """A copy of a tiny saved model, re-saved with a training record and log as a training run leaves it."""
    saved, cls, name = ((tiny_generator_dir, AdapterGenerator, "generator") if request.param == "generator"
                        else (tiny_slot_dir, SlotModel, "slots"))
    src = shutil.copytree(saved, tmp_path / "run")                 # the shared fixture stays as it is
    cls.load(src, tiny_lm).save(src, extra=RECORD)
    (src / "training_log.json").write_text('{"steps": 7}')
    return src, cls, name


def test_a_snapshot_is_bfloat16_on_disk_and_loads_back_as_the_model(run_dir, tiny_lm, tmp_path):
    src, cls, name = run_dir
    out = snapshot(src, tmp_path / "snap")
    stored = load_file(str(out / f"{name}.safetensors"))
    assert {t.dtype for t in stored.values() if t.is_floating_point()} == {torch.bfloat16}
    original, copy = cls.load(src, tiny_lm), cls.load(out, tiny_lm)     # the digest and base checks pass
    assert copy.config == original.config
    for (k, a), (k2, b) in zip(original.state_dict().items(), copy.state_dict().items()):
        assert k == k2 and b.dtype == a.dtype
        assert torch.equal(b, a.to(torch.bfloat16).to(a.dtype)), k
    meta = json.loads((out / f"{name}.json").read_text())
    assert {k: meta[k] for k in RECORD} == RECORD
    assert meta["snapshot"] == {"from": str(src), "weights_dtype": "bfloat16"}
    assert json.loads((out / "training_log.json").read_text()) == {"steps": 7}
    assert (out / f"{name}.safetensors").stat().st_size < 0.6 * (src / f"{name}.safetensors").stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "snap"]          # no temporary folder left
    assert (out.stat().st_mode & 0o777) == (src.stat().st_mode & 0o777)          # not mkdtemp's 0700


def test_the_command_writes_a_new_folder_and_refuses_a_taken_one(run_dir, tmp_path, capsys):
    src, _, name = run_dir
    assert main([str(src), str(tmp_path / "snap")]) == 0
    assert "snapshot in" in capsys.readouterr().out
    before = sorted(p.name for p in (tmp_path / "snap").iterdir())
    for taken in (tmp_path / "snap", src):
        assert main([str(src), str(taken)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "already exists and is not an empty folder" in err
    assert sorted(p.name for p in (tmp_path / "snap").iterdir()) == before == sorted(
        [f"{name}.json", f"{name}.safetensors", "training_log.json"])


def test_a_folder_without_a_model_is_one_line(tmp_path, capsys):
    assert main([str(tmp_path), str(tmp_path / "snap")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "holds no generator" in err and len(err.strip().splitlines()) == 1
