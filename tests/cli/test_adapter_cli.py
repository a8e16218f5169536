"""The adapter method from the command line: init, ingest, ask, and export-lora (peft loads the same logits)."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from memkit.adapters.encode import encode_documents
from memkit.adapters.generator import AdapterGenerator
from memkit.adapters.state import AdapterState

TEXTS = ["Ada Varn lives in Port Elsin and keeps the lighthouse there.",
         "Tomas Brell draws maps in Kessin for the Sorrel Company.",
         "Mira Okonde leads the Harbour Trust of the northern coast."]


@pytest.fixture
def adapter_store(memkit, model_dir, tiny_generator_dir, tmp_path):
    r = memkit("init", "--model", model_dir, "--method", "adapter", "-o", f"generator={tiny_generator_dir}",
               "-o", "chunk_tokens=16")
    assert r.exit_code == 0, r.output + r.stderr
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": t, "id": f"d{i}"}) + "\n" for i, t in enumerate(TEXTS)))
    assert memkit("ingest", docs).exit_code == 0
    return memkit


def test_cli_adapter_store_exports_a_lora_peft_loads_identically(adapter_store, model_dir, tiny_generator_dir,
                                                                 tmp_path):
    from peft import PeftModel

    from memkit.lm import FrozenLM

    run = adapter_store
    answer = run.json("ask", "Who leads the Harbour Trust?")
    assert answer["method"] == "adapter" and answer["sources"]
    ids = [d["id"] for d in run.json("ls")][:2]
    info = run.json("export-lora", *ids, "--out", tmp_path / "lora")
    assert info["documents"] == ids and info["rank"] == 4
    # memkit's own application of the merged adapter (the states as stored: half precision) equals peft's
    from memkit.methods.adapter import BASIS
    from storage import Store

    lm = FrozenLM.load(str(model_dir), device="cpu", dtype="float32")
    gen = AdapterGenerator.load(tiny_generator_dir, lm)
    with Store.open(run.store) as store:
        payloads = [store.load_payload(store.memories(i)[0].id) for i in ids]
    assert all(p["__tokens__"].dtype == "int64" and any(a.dtype == "float16" for a in p.values()) for p in payloads)
    states = [AdapterState.from_arrays({k: a for k, a in p.items() if not k.startswith(BASIS)}) for p in payloads]
    with torch.no_grad():
        fresh = AdapterState.total(encode_documents(lm, gen, TEXTS[:2], chunk_tokens=16))
        for name, m in AdapterState.total(states).mats.items():     # half precision: within its rounding
            torch.testing.assert_close(m, fresh.mats[name], rtol=2e-3, atol=2e-3)
        delta = gen.delta(AdapterState.total(states))
        probe = [lm.bos_ids + lm.encode("Where does Ada Varn live?")]
        ours, _ = lm.logits(probe, delta=delta)
        peft_model = PeftModel.from_pretrained(copy.deepcopy(lm.model), str(tmp_path / "lora")).eval()
        theirs = peft_model(input_ids=torch.tensor(probe)).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    # a store of another method has nothing to export
    other = run.__class__(tmp_path / "rag")
    assert other("init", "--model", model_dir, "--method", "rag").exit_code == 0
    r = other("export-lora", "1", "--out", tmp_path / "x")
    assert r.exit_code == 2 and "only adapter stores" in r.stderr


def test_export_lora_refuses_to_overwrite_a_file_or_a_foreign_directory_before_loading_the_model(
        adapter_store, tmp_path, monkeypatch):
    import cli.export

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr(cli.export, "load_engine", no_model)
    mine = tmp_path / "notes.txt"
    mine.write_text("my notes")
    r = adapter_store("export-lora", "1", "--out", mine)
    assert r.exit_code == 2
    assert r.stderr == f"error: --out {mine} is a file; name a new or empty directory to write the LoRA into\n"
    assert mine.read_text() == "my notes"

    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "adapter_config.json").write_text('{"mine": true}')
    r = adapter_store("export-lora", "1", "--out", folder)
    assert r.exit_code == 2
    assert r.stderr == (f"error: --out {folder} is a directory holding other files; name a new or empty directory "
                        "(only a previous export-lora output, which holds memkit_lora.json, is replaced)\n")
    assert (folder / "adapter_config.json").read_text() == '{"mine": true}'

    r = adapter_store("export-lora", "1", "--out", mine / "lora")
    assert r.exit_code == 2
    assert r.stderr == f"error: --out {mine / 'lora'} cannot be created: {mine} is a file, not a directory\n"
    assert r.exception is None or isinstance(r.exception, SystemExit)


def test_export_lora_writes_a_new_path_an_empty_directory_and_over_a_previous_export(adapter_store, tmp_path):
    ids = [d["id"] for d in adapter_store.json("ls")]
    empty = tmp_path / "empty"
    empty.mkdir()
    for out in (tmp_path / "new" / "lora", empty):
        info = adapter_store.json("export-lora", ids[0], "--out", out)
        assert info["documents"] == ids[:1]
        assert {p.name for p in out.iterdir()} >= {"adapter_config.json", "adapter_model.safetensors",
                                                    "memkit_lora.json"}
    first = (empty / "adapter_model.safetensors").read_bytes()
    info = adapter_store.json("export-lora", *ids[:2], "--out", empty)   # a previous export is replaced
    assert info["documents"] == ids[:2] and (empty / "adapter_model.safetensors").read_bytes() != first
