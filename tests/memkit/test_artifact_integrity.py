"""What ties a saved generator or slot model to its base model and to its own files: a weights digest that does
not depend on the dtype the base model was loaded in, offloaded weights read (or refused in one line), prefix
caches placed where each layer runs, torn saves and wrongly typed settings refused in one line."""

from __future__ import annotations

import hashlib
import json
import re
import shutil

import pytest
import torch

from memkit.adapters.generator import AdapterGenerator
from memkit.errors import ConfigError
from memkit import hooks
from memkit.hooks import Prefix, build_prefix_cache, decoder_layers
from memkit.lm import FrozenLM
from memkit.slots import SlotModel


def _generator(lm):
    return AdapterGenerator.for_lm(lm, lm.target_modules("attn_out"), state_rank=8, svd_rank=2, seed=0)


def _slots(lm):
    return SlotModel.for_lm(lm, slots=2, mem_dim=16, key_dim=8, prefix_len=2, heads=2, seed=0)


KINDS = [(_generator, AdapterGenerator, "generator.json", "generator.safetensors"),
         (_slots, SlotModel, "slots.json", "slots.safetensors")]


def _legacy_digest(model) -> str:
    """The digest memkit wrote before it was versioned (float32 samples of the loaded values)."""
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        flat = p.detach().reshape(-1)
        step = max(1, flat.numel() // 65536)
        h.update(f"{name}:{list(p.shape)}".encode())
        h.update(flat[::step][:65536].float().cpu().numpy().tobytes())
    return h.hexdigest()


def _edit_config(directory, name, **values):
    meta = json.loads((directory / name).read_text())
    meta["config"].update(values)
    (directory / name).write_text(json.dumps(meta))


# ---------------------------------------------------------------- A: dtype-invariant digest


def test_the_weights_digest_does_not_depend_on_the_dtype_the_weights_were_saved_or_loaded_in(tiny_model_dir,
                                                                                             tmp_path):
    path = tiny_model_dir("llama")
    fp32 = FrozenLM.load(str(path), device="cpu", dtype="float32")
    bf16 = FrozenLM.load(str(path), device="cpu", dtype="bfloat16")
    assert fp32.weights_digest.startswith("bf16:")
    assert fp32.weights_digest == bf16.weights_digest
    # the same checkpoint saved in bfloat16, loaded either way
    saved = tmp_path / "bf16-saved"
    bf16.model.save_pretrained(saved)
    bf16.tokenizer.save_pretrained(saved)
    assert FrozenLM.load(str(saved), device="cpu", dtype="float32").weights_digest == fp32.weights_digest
    assert FrozenLM.load(str(saved), device="cpu", dtype="bfloat16").weights_digest == fp32.weights_digest
    # other weights still differ
    assert FrozenLM.load(str(tiny_model_dir("llama", seed=3)), device="cpu",
                         dtype="float32").weights_digest != fp32.weights_digest


@pytest.mark.parametrize("make, cls, name, weights", KINDS)
def test_an_artifact_trained_in_one_dtype_loads_in_the_other(tiny_lm, tiny_model_dir, tmp_path, make, cls, name,
                                                             weights):
    out = make(tiny_lm).save(tmp_path / "a")
    bf16 = FrozenLM.load(str(tiny_model_dir("llama")), device="cpu", dtype="bfloat16")
    cls.load(out, bf16)


@pytest.mark.parametrize("make, cls, name, weights", KINDS)
def test_an_artifact_with_the_old_digest_loads_when_it_matches_and_says_which_check_failed(
        tiny_lm, tiny_model_dir, tmp_path, make, cls, name, weights):
    out = make(tiny_lm).save(tmp_path / "a")
    _edit_config(out, name, base_weights=_legacy_digest(tiny_lm.model))
    cls.load(out, tiny_lm)

    other = FrozenLM.load(str(tiny_model_dir("llama", seed=3)), device="cpu", dtype="float32")
    for stored in (_legacy_digest(tiny_lm.model), tiny_lm.weights_digest):
        _edit_config(out, name, base_weights=stored)
        with pytest.raises(ConfigError) as err:
            cls.load(out, other)
        text = str(err.value)
        assert "\n" not in text and "weights" in text and "another base model" in text and "--model" in text
        ids = re.search(r"weights digest (\S+), this model's (\S+),", text)
        assert ids and ids.group(1) != ids.group(2), text

    _edit_config(out, name, base_weights=tiny_lm.weights_digest, base_model="0" * 64)
    with pytest.raises(ConfigError) as err:
        cls.load(out, tiny_lm)
    text = str(err.value)
    assert "fingerprint" in text and "weights digest" not in text
    ids = re.search(r"fingerprint (\S+), this model's (\S+),", text)
    assert ids and ids.group(1) != ids.group(2), text


def test_the_packaged_artifacts_load_on_the_packaged_model_in_both_dtypes():
    from memkit.defaults import default_model
    from memkit.methods.adapter import PACKAGED_GENERATOR
    from memkit.methods.hybrid import PACKAGED_HYBRID_SLOTS
    from memkit.methods.slots import PACKAGED_SLOTS

    for dtype in ("float32", "bfloat16"):
        lm = FrozenLM.load(default_model(), device="cpu", dtype=dtype)
        AdapterGenerator.load(PACKAGED_GENERATOR, lm)
        SlotModel.load(PACKAGED_SLOTS, lm)
        SlotModel.load(PACKAGED_HYBRID_SLOTS, lm)
        for d, f in ((PACKAGED_GENERATOR, "generator.json"), (PACKAGED_SLOTS, "slots.json"),
                     (PACKAGED_HYBRID_SLOTS, "slots.json")):
            assert json.loads((d / f).read_text())["config"]["base_weights"] == lm.weights_digest


# ---------------------------------------------------------------- B: offloaded weights


def test_weights_offloaded_by_accelerate_are_read_through_its_weights_map(tiny_lm, tiny_model_dir):
    from accelerate.hooks import attach_align_device_hook

    lm = FrozenLM.load(str(tiny_model_dir("llama")), device="cpu", dtype="float32")
    attach_align_device_hook(lm.model, execution_device="cpu", offload=True)
    assert all(p.device.type == "meta" for p in lm.model.parameters())
    assert lm.weights_digest == tiny_lm.weights_digest
    assert lm.device == torch.device("cpu")
    prompt = "Question: Where does Ada Varn live?\nAnswer:"
    assert lm.generate([prompt], max_new_tokens=4) == tiny_lm.generate([prompt], max_new_tokens=4)


def test_weights_on_the_meta_device_that_cannot_be_read_are_one_line(tiny_model_dir):
    lm = FrozenLM.load(str(tiny_model_dir("llama")), device="cpu", dtype="float32")
    lm.model.to("meta")
    with pytest.raises(ConfigError) as err:
        lm.weights_digest
    text = str(err.value)
    assert "\n" not in text and "device_map" in text and "offload" in text


# ---------------------------------------------------------------- C: prefix cache per layer device


def test_a_prefix_cache_puts_each_layers_keys_and_values_where_that_layer_runs(tiny_model_dir):
    lm = FrozenLM.load(str(tiny_model_dir("llama")), device="cpu", dtype="float32")
    _, layers = decoder_layers(lm.model, lm.num_layers)
    layers[1].to("meta")    # stands in for a layer a device_map put on another device
    devices = hooks.layer_devices(lm.model, lm.num_layers, fallback=lm.device)
    assert [d.type for d in devices] == ["cpu", "meta"] + ["cpu"] * (lm.num_layers - 2)
    shape = (1, lm.num_kv_heads, 3, lm.head_dim)
    prefix = Prefix([torch.randn(shape) for _ in range(lm.num_layers)],
                    [torch.randn(shape) for _ in range(lm.num_layers)])
    cache = lm.prefix_cache(prefix, 2)
    for layer, device in zip(cache.layers, devices):
        assert layer.keys.device.type == device.type and layer.values.device.type == device.type
        assert layer.keys.shape[0] == 2

    cache = build_prefix_cache(prefix, 1, config=lm.model.config, num_layers=lm.num_layers,
                               num_kv_heads=lm.num_kv_heads, head_dim=lm.head_dim, device=torch.device("cpu"),
                               dtype=torch.float32)
    assert all(layer.keys.device.type == "cpu" for layer in cache.layers)


def test_a_layer_offloaded_by_accelerate_runs_its_prefix_on_its_execution_device(tiny_model_dir):
    from accelerate.hooks import attach_align_device_hook

    lm = FrozenLM.load(str(tiny_model_dir("llama")), device="cpu", dtype="float32")
    _, layers = decoder_layers(lm.model, lm.num_layers)
    attach_align_device_hook(layers[0], execution_device="cpu", offload=True)
    assert all(p.device.type == "meta" for p in layers[0].parameters())
    assert [d.type for d in hooks.layer_devices(lm.model, lm.num_layers, fallback=lm.device)] == ["cpu"] * lm.num_layers


# ---------------------------------------------------------------- D: torn saves


@pytest.mark.parametrize("make, cls, name, weights", KINDS)
def test_weights_from_another_save_are_refused_in_one_line(tiny_lm, tmp_path, make, cls, name, weights,
                                                           monkeypatch):
    import memkit.atomic as atomic

    synced = []
    real = atomic.os.fsync
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    out = make(tiny_lm).save(tmp_path / "a")
    assert len(synced) >= 2
    meta = json.loads((out / name).read_text())
    assert meta["weights_sha256"] == hashlib.sha256((out / weights).read_bytes()).hexdigest()
    cls.load(out, tiny_lm)

    torch.manual_seed(5)
    other = make(tiny_lm)
    for p in other.parameters():
        torch.nn.init.normal_(p)
    other.save(tmp_path / "b")
    shutil.copyfile(tmp_path / "b" / weights, out / weights)    # a save interrupted between its two files
    with pytest.raises(ConfigError) as err:
        cls.load(out, tiny_lm)
    text = str(err.value)
    assert "\n" not in text and "do not belong together" in text and "interrupted" in text

    del meta["weights_sha256"]    # artifacts written before the field load as before
    (out / name).write_text(json.dumps(meta))
    cls.load(out, tiny_lm)


# ---------------------------------------------------------------- E: wrongly typed settings


@pytest.mark.parametrize("make, cls, name, weights, key, value", [
    (*KINDS[0], "state_rank", "8"), (*KINDS[0], "targets", "model.layers.0.self_attn.o_proj"),
    (*KINDS[0], "alpha", True), (*KINDS[1], "slots", "2"), (*KINDS[1], "matching", 1),
    (*KINDS[1], "temperature", "0.05")])
def test_a_wrongly_typed_setting_is_one_line_naming_the_file_and_key(tiny_lm, tmp_path, make, cls, name, weights,
                                                                     key, value):
    out = make(tiny_lm).save(tmp_path / "a")
    _edit_config(out, name, **{key: value})
    with pytest.raises(ConfigError) as err:
        cls.load(out, tiny_lm)
    text = str(err.value)
    assert "\n" not in text and name in text and key in text, text


def test_a_whole_number_where_a_float_is_expected_is_fine(tiny_lm, tmp_path):
    out = _generator(tiny_lm).save(tmp_path / "a")
    _edit_config(out, "generator.json", alpha=64)
    assert AdapterGenerator.load(out, tiny_lm).config.alpha == 64
