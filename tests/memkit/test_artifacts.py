"""Saved generators and slot models: what they record, and every refusal a load makes, each one line."""

from __future__ import annotations

import json

import pytest
import torch

from memkit.adapters.generator import AdapterGenerator
from memkit.errors import ConfigError
from memkit.slots import SlotModel


def _generator(lm):
    return AdapterGenerator.for_lm(lm, lm.target_modules("attn_out"), state_rank=8, svd_rank=2, seed=0)


def _slots(lm):
    return SlotModel.for_lm(lm, slots=2, mem_dim=16, key_dim=8, prefix_len=2, heads=2, seed=0)


@pytest.mark.parametrize("make, cls, name", [(_generator, AdapterGenerator, "generator.json"),
                                              (_slots, SlotModel, "slots.json")])
def test_an_artifact_records_its_format_and_data_and_refuses_what_it_cannot_read(tiny_lm, tiny_model_dir, tmp_path,
                                                                                  make, cls, name):
    from memkit.lm import FrozenLM

    model = make(tiny_lm)
    out = model.save(tmp_path / "a", extra={"data": {"data": ["squad:x.json"]}, "prompt_format": "plain"})
    meta = json.loads((out / name).read_text())
    assert meta["format"] == 2 and meta["data"] == {"data": ["squad:x.json"]} and meta["prompt_format"] == "plain"
    again = cls.load(out, tiny_lm)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert not any(p.name.endswith(".tmp") for p in out.iterdir())

    def refused(change, words):
        broken = tmp_path / f"b{len(list(tmp_path.iterdir()))}"
        broken.mkdir()
        for f in out.iterdir():
            (broken / f.name).write_bytes(f.read_bytes())
        change(broken)
        with pytest.raises(ConfigError) as err:
            cls.load(broken, tiny_lm)
        assert words in str(err.value) and "\n" not in str(err.value)

    def edit(field, value):
        def change(d):
            m = json.loads((d / name).read_text())
            m["config"][field] = value
            (d / name).write_text(json.dumps(m))
        return change

    refused(edit("invented_setting", 3), "does not know (invented_setting)")
    refused(lambda d: (d / name).write_text(json.dumps({**meta, "format": 99})), "newer than this memkit reads")
    refused(lambda d: (d / name).write_text("{not json"), "cannot be read")
    refused(lambda d: (d / name.replace(".json", ".safetensors")).write_bytes(b"garbage"), "damaged")
    other = FrozenLM.load(str(tiny_model_dir("llama", seed=3)), device="cpu", dtype="float32")
    with pytest.raises(ConfigError, match="another base model.*--model") as err:
        cls.load(out, other)
    assert "\n" not in str(err.value)


def test_weights_that_do_not_fit_the_config_are_one_line(tiny_lm, tmp_path):
    out = _generator(tiny_lm).save(tmp_path / "g")
    meta = json.loads((out / "generator.json").read_text())
    meta["config"]["state_rank"] = 4
    (out / "generator.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="do not fit the generator's config") as err:
        AdapterGenerator.load(out, tiny_lm)
    assert "\n" not in str(err.value)
