"""The online LoRA fine-tuning baseline: frozen base, real learning, state kept by the store, peft-compatible."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from memkit.engine import Engine
from memkit.errors import ConfigError
from memkit.lora import resolve_targets
from memkit.methods import build_method
from memkit.methods.finetune import NO_SOURCES
from memkit.documents import SourceDocument
from storage import Store



TEXTS = [
    "Ada Varn is a lighthouse keeper who lives in Port Elsin and works for the Harbour Trust.",
    "Tomas Brell is a cartographer born in Kessin who drew the first map of the Sorrel delta.",
    "Mira Okonde leads the Harbour Trust, which runs the lighthouses of the northern coast.",
]
FAST = {"steps": 2, "max_tokens": 32, "max_new_tokens": 6, "lr": 1e-2}


def new_engine(lm, path, options=FAST) -> Engine:
    method = build_method("finetune", lm, options)
    store = Store.create(path, model_id=lm.name, model_revision=None, model_fingerprint=lm.fingerprint,
                         method="finetune", method_config=method.config_dict(), key_dim=method.key_dim)
    return Engine(lm, method, store)


def reopen(lm, path) -> Engine:
    store = Store.open(path)
    return Engine(lm, build_method("finetune", lm, store.info.method_config), store)


def test_base_weights_stay_bit_identical_and_only_lora_changes(tiny_lm, tmp_path):
    before = {k: v.clone() for k, v in tiny_lm.model.state_dict().items()}
    engine = new_engine(tiny_lm, tmp_path / "s")
    initial = {k: v.copy() for k, v in engine.method.lora.arrays().items()}
    engine.ingest([SourceDocument(text=t, source=f"d{i}") for i, t in enumerate(TEXTS)])
    after = tiny_lm.model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before), "a base weight changed"
    assert all(not p.requires_grad for p in tiny_lm.model.parameters())
    trained = engine.method.lora.arrays()
    assert any(not np.array_equal(initial[k], trained[k]) for k in initial if k.endswith("lora_B"))
    engine.store.close()


def test_documents_are_kept_without_keys_and_answers_have_no_sources(tiny_lm, tmp_path):
    engine = new_engine(tiny_lm, tmp_path / "s")
    report = engine.ingest([SourceDocument(text=t, source=f"d{i}") for i, t in enumerate(TEXTS)])
    assert len(report.added) == 3 and report.memories == 3
    for doc_id in report.added:
        (memory,) = engine.store.memories(doc_id)
        assert memory.kind == "doc" and memory.blob_path is None
    assert engine.store.stats()["key_bytes"] == 0 and engine.store.stats()["index_vectors"] == 0
    answer = engine.ask("Where does Ada Varn live?")
    assert answer.sources == [] and answer.notes.sources_note == NO_SOURCES
    assert answer.notes.documents_trained == 3
    engine.store.close()


def test_lora_state_persists_across_reopening(tiny_lm, tmp_path):
    path = tmp_path / "s"
    engine = new_engine(tiny_lm, path)
    engine.ingest([SourceDocument(text=t, source=f"d{i}") for i, t in enumerate(TEXTS)])
    questions = ["Where does Ada Varn live?", "Who leads the Harbour Trust?"]
    first = [a.text for a in engine.ask_many(questions)]
    factors = engine.method.lora.arrays()
    engine.store.close()

    again = reopen(tiny_lm, path)
    assert again.method.steps_done == engine.method.steps_done
    for key, value in factors.items():
        assert np.array_equal(again.method.lora.arrays()[key], value)
    assert [again.ask(q).text for q in questions] == first
    fresh = build_method("finetune", tiny_lm, FAST)
    assert fresh.lora.is_zero(), "without the stored state a new method starts from a zero LoRA"
    again.store.close()


def test_training_resumed_after_reopening_equals_one_uninterrupted_run(tiny_lm, tmp_path):
    whole = new_engine(tiny_lm, tmp_path / "whole", dict(FAST, steps=1))
    whole.ingest([SourceDocument(text=t, source="s") for t in TEXTS[:2]])
    split = new_engine(tiny_lm, tmp_path / "split", dict(FAST, steps=1))
    split.ingest([SourceDocument(text=TEXTS[0], source="s")])
    split.store.close()
    with Store.open(tmp_path / "split", write=True) as store:
        resumed = Engine(tiny_lm, build_method("finetune", tiny_lm, store.info.method_config), store)
        resumed.ingest([SourceDocument(text=TEXTS[1], source="s")])
        got = resumed.method.lora.arrays()
    want = whole.method.lora.arrays()
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-7)
    whole.store.close()


def test_the_document_is_learnt(tiny_lm):
    """A real learning check: the trained document's own loss drops clearly, and more than an unseen one's."""
    method = build_method("finetune", tiny_lm, {"steps": 60, "lr": 3e-2, "max_tokens": 64})
    own, other = TEXTS[0], TEXTS[1]
    own_before, other_before = method.document_loss(own), method.document_loss(other)
    method.encode([own])
    own_after, other_after = method.document_loss(own), method.document_loss(other)
    assert own_after < own_before - 0.3, (own_before, own_after)
    assert (own_before - own_after) > (other_before - other_after) + 0.2
    assert method.last_losses[-1] < method.last_losses[0]


def test_exported_lora_gives_peft_the_same_logits(tiny_lm, tmp_path):
    from peft import PeftModel

    method = build_method("finetune", tiny_lm, {"steps": 3, "lr": 3e-2, "max_tokens": 64})
    method.encode([TEXTS[0]])
    ids = [tiny_lm.bos_ids + tiny_lm.encode(TEXTS[2])]
    with torch.no_grad():
        ours, _ = tiny_lm.logits(ids, delta=method.lora.delta(detach=True))
        base, _ = tiny_lm.logits(ids)
    peft_model = PeftModel.from_pretrained(copy.deepcopy(tiny_lm.model), str(method.lora.export_peft(tmp_path / "a")))
    peft_model.eval()
    with torch.no_grad():
        theirs = peft_model(input_ids=torch.tensor(ids)).logits
    assert (ours - base).abs().max() > 1e-3, "the LoRA must change something for the check to mean anything"
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family,expected", [("llama", "self_attn.q_proj"), ("gpt2", "attn.c_attn"),
                                             ("gpt_neox", "attention.query_key_value")])
def test_qv_targets_resolve_in_every_family(tiny_model_dir, family, expected):
    from memkit.lm import FrozenLM

    lm = FrozenLM.load(str(tiny_model_dir(family)), device="cpu", dtype="float32")
    names = resolve_targets(lm, "qv")
    assert names and any(n.endswith(expected) for n in names)
    assert resolve_targets(lm, "attn_out") == lm.target_modules("attn_out")


def test_bad_options_name_the_option(tiny_lm):
    with pytest.raises(ConfigError, match="rank"):
        build_method("finetune", tiny_lm, {"rank": 0})
    with pytest.raises(ConfigError, match="targets"):
        build_method("finetune", tiny_lm, {"targets": "no_such_proj"})
    with pytest.raises(ConfigError, match="lr"):
        build_method("finetune", tiny_lm, {"lr": "-1"})


def test_a_stored_state_of_another_rank_is_refused(tiny_lm):
    method = build_method("finetune", tiny_lm, {"steps": 1, "max_tokens": 32})
    method.encode([TEXTS[0]])
    other = build_method("finetune", tiny_lm, {"rank": 4})
    with pytest.raises(ConfigError, match="rank"):
        other.load_state_tensors(method.state_tensors())
