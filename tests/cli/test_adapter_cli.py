"""The adapter method from the command line: init, ingest, ask, and export-lora (peft loads the same logits)."""

from __future__ import annotations

import copy
import json

import torch

from memkit.adapters.encode import encode_documents
from memkit.adapters.generator import AdapterGenerator
from memkit.adapters.state import AdapterState

TEXTS = ["Ada Varn lives in Port Elsin and keeps the lighthouse there.",
         "Tomas Brell draws maps in Kessin for the Sorrel Company.",
         "Mira Okonde leads the Harbour Trust of the northern coast."]


def test_cli_adapter_store_exports_a_lora_peft_loads_identically(memkit, model_dir, tiny_generator_dir, tmp_path):
    from peft import PeftModel

    from memkit.lm import FrozenLM

    run = memkit
    r = run("init", "--model", model_dir, "--method", "adapter", "-o", f"generator={tiny_generator_dir}",
            "-o", "chunk_tokens=16")
    assert r.exit_code == 0, r.output + r.stderr
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": t, "id": f"d{i}"}) + "\n" for i, t in enumerate(TEXTS)))
    assert run("ingest", docs).exit_code == 0
    answer = run.json("ask", "Who leads the Harbour Trust?")
    assert answer["method"] == "adapter" and answer["sources"]
    ids = [d["id"] for d in run.json("ls")][:2]
    info = run.json("export-lora", *ids, "--out", tmp_path / "lora")
    assert info["documents"] == ids and info["rank"] == 4
    # memkit's own application of the merged adapter equals peft's
    lm = FrozenLM.load(str(model_dir), device="cpu", dtype="float32")
    gen = AdapterGenerator.load(tiny_generator_dir, lm)
    with torch.no_grad():
        delta = gen.delta(AdapterState.total(encode_documents(lm, gen, TEXTS[:2], chunk_tokens=16)))
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
