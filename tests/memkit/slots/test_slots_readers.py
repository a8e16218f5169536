"""The slot model's layer reader, question-conditioned aggregation and distillation from reading."""

from __future__ import annotations

import itertools

import pytest
import torch

from memkit.adapters.train import ContextQA
from memkit.errors import ConfigError
from memkit.prompts import QAFormat
from memkit.slots import SlotModel
from memkit.slots.model import reader_layer_indices
from memkit.slots.train import SlotTrainConfig, answer_sequence, batch_loss, reading_sequences, train_slots
from memkit.training import distillation_loss

ITEMS = [ContextQA(["Ada Varn lives in Port Elsin."], [("Where does Ada Varn live?", "Port Elsin")]),
         ContextQA(["Tomas Brell works for the Sorrel Company."], [("Who does Tomas Brell work for?", "Sorrel Company")]),
         ContextQA(["Mira Okonde was born in Kessin."], [("Where was Mira Okonde born?", "Kessin")]),
         ContextQA(["Ilse Parrow teaches at Dunmere school."], [("Where does Ilse Parrow teach?", "Dunmere school")])]
SMALL = dict(slots=2, mem_dim=16, key_dim=8, prefix_len=3, blocks=1, heads=2)
LAYERS = dict(SMALL, reader="layers", reader_blocks=1)


def test_reader_layers_are_evenly_spaced_and_end_at_the_last():
    assert reader_layer_indices(4, 0) == [0, 1, 2, 3, 4]
    assert reader_layer_indices(18, 4) == [0, 6, 12, 18]
    assert reader_layer_indices(18, 1) == [18]
    assert reader_layer_indices(2, 9) == [0, 1, 2]


def test_the_layer_reader_reads_without_gradients_through_the_lm(tiny_lm):
    model = SlotModel.for_lm(tiny_lm, **LAYERS, reader_layers=2)
    assert not hasattr(model, "slot_embeds") and model.reader.layers == [0, tiny_lm.num_layers]
    texts = ["Ada Varn lives in Port Elsin.", "Tomas Brell works for the Sorrel Company, by the harbour."]
    memory = model.read(tiny_lm, texts)
    assert memory.shape == (2, 2, 16)
    # a row's vectors do not depend on the other rows (padding is hidden)
    torch.testing.assert_close(model.read(tiny_lm, texts[:1])[0], memory[0], atol=1e-5, rtol=1e-4)
    memory.sum().backward()
    assert model.reader.queries.grad is not None and model.reader.proj.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny_lm.model.parameters())


def test_the_layer_reader_refuses_a_text_longer_than_its_window(tiny_lm):
    model = SlotModel.for_lm(tiny_lm, **LAYERS, max_tokens=8)
    with pytest.raises(ConfigError, match="windows"):
        model.read(tiny_lm, ["word " * 40])
    groups, present = model.read_groups(tiny_lm, ["word " * 40])    # read whole, in windows
    assert present.sum() >= 5


def test_self_conditioning_makes_the_latents_depend_on_the_question(tiny_lm):
    """With one memory and no conditioning, the question's vectors reach nothing the LM reads; with
    conditioning self, another question gives another prefix over the same memory."""
    torch.manual_seed(0)
    memory = torch.randn(1, 1, 2, 16)
    scores, q1, q2 = torch.ones(1, 1), torch.randn(1, 2, 16), torch.randn(1, 2, 16)
    plain = SlotModel.for_lm(tiny_lm, **SMALL)
    torch.testing.assert_close(plain.aggregate(q1, memory, scores), plain.aggregate(q2, memory, scores))
    conditioned = SlotModel.for_lm(tiny_lm, **SMALL, conditioning="self")
    assert not torch.allclose(conditioned.aggregate(q1, memory, scores), conditioned.aggregate(q2, memory, scores))
    # still blind to the order of the memories
    two = torch.randn(1, 2, 2, 16)
    s = torch.tensor([[0.3, 0.8]])
    torch.testing.assert_close(conditioned.aggregate(q1, two, s), conditioned.aggregate(q1, two.flip(1), s.flip(1)),
                               atol=1e-5, rtol=1e-4)


def test_new_options_save_and_load_and_old_configs_load_as_before(tiny_lm, tmp_path):
    model = SlotModel.for_lm(tiny_lm, **LAYERS, conditioning="self")
    model.save(tmp_path / "m")
    again = SlotModel.load(tmp_path / "m", tiny_lm)
    assert again.config.reader == "layers" and again.config.conditioning == "self"
    texts = ["Ada Varn lives in Port Elsin."]
    torch.testing.assert_close(again.read(tiny_lm, texts), model.read(tiny_lm, texts))
    with pytest.raises(ConfigError, match="--reader"):
        SlotModel.for_lm(tiny_lm, **SMALL, reader="encoder")
    with pytest.raises(ConfigError, match="--conditioning"):
        SlotModel.for_lm(tiny_lm, **SMALL, conditioning="cross")


def test_distillation_is_zero_when_student_and_teacher_read_the_same(tiny_lm):
    seqs = [tiny_lm.bos_ids + tiny_lm.encode("Question: where? Answer: Port Elsin\n")]
    weights = [[0.0] * (len(seqs[0]) - 3) + [1.0] * 3]
    assert float(distillation_loss(tiny_lm, seqs, weights, seqs, weights)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="other tokens"):
        distillation_loss(tiny_lm, seqs, weights, [seqs[0][:-1] + [seqs[0][-2]]], weights)


def test_reading_sequences_put_the_documents_in_the_prompt_and_weigh_the_same_answer(tiny_lm):
    fmt = QAFormat()
    student = [answer_sequence(tiny_lm, "Where does Ada Varn live?", "Port Elsin", fmt)]
    teacher = reading_sequences(tiny_lm, [("Where does Ada Varn live?", "Port Elsin",
                                           ["Ada Varn lives in Port Elsin."])], fmt, student)
    ids, w = teacher[0]
    assert "Ada Varn lives in Port Elsin." in tiny_lm.tokenizer.decode(ids)
    s_ids, s_w = student[0]
    assert [t for t, x in zip(ids, w) if x > 0] == [t for t, x in zip(s_ids, s_w) if x > 0] != []
    # a prompt that does not fit the context: no teacher, and the student row weighs nothing either
    long_doc = "word " * (tiny_lm.max_context + 10)
    student = [answer_sequence(tiny_lm, "Where?", "here", fmt)]
    teacher = reading_sequences(tiny_lm, [("Where?", "here", [long_doc])], fmt, student)
    assert set(student[0][1]) == {0.0} and set(teacher[0][1]) == {0.0}


def test_distillation_trains_the_layer_reader_toward_reading(tiny_lm):
    cfg = SlotTrainConfig(**LAYERS, conditioning="self", w_distill=1.0, batch_size=4, lr=1e-2, warmup_steps=1,
                          max_steps=10, minutes=0, eval_every=100)
    model = SlotModel.for_lm(tiny_lm, **cfg.shape())
    _, parts = batch_loss(tiny_lm, model, ITEMS, cfg)
    assert parts["distill"] > 0 and {"qa", "distill", "match", "lm"} <= set(parts)
    before = {k: v.clone() for k, v in tiny_lm.model.state_dict().items()}
    report = train_slots(tiny_lm, model, itertools.cycle(ITEMS), cfg, log=lambda line: None)
    assert all(torch.equal(before[k], v) for k, v in tiny_lm.model.state_dict().items())
    assert sum(report.losses[-3:]) < sum(report.losses[:3])
    with pytest.raises(ConfigError, match="--w-distill"):
        SlotTrainConfig(w_distill=-1).validate()


def test_a_reading_lora_changes_only_how_texts_are_read_and_learns_from_the_answers(tiny_lm, tmp_path):
    model = SlotModel.for_lm(tiny_lm, **SMALL, reader_rank=2)
    assert model.config.reader_modules and len(model.reader_a) == len(model.config.reader_modules)
    plain = SlotModel.for_lm(tiny_lm, **SMALL)
    texts = ["Ada Varn lives in Port Elsin."]
    # B starts at zero: a fresh reading LoRA reads exactly as the LM alone
    torch.testing.assert_close(model.read(tiny_lm, texts), plain.read(tiny_lm, texts))
    cfg = SlotTrainConfig(**SMALL, reader_rank=2, batch_size=4, max_steps=3, lr=1e-2, warmup_steps=0, seed=0)
    loss, _ = batch_loss(tiny_lm, model, ITEMS, cfg)
    loss.backward()
    assert all(b.grad is not None and b.grad.abs().sum() > 0 for b in model.reader_b)
    with torch.no_grad():
        for b in model.reader_b:
            b.add_(0.5)
    assert not torch.allclose(model.read(tiny_lm, texts), plain.read(tiny_lm, texts))
    # the LM answers without it: no delta is left on the model after reading
    before = tiny_lm.logits([[1, 2, 3]])[0]
    model.read(tiny_lm, texts)
    torch.testing.assert_close(tiny_lm.logits([[1, 2, 3]])[0], before)
    # it is saved and loaded with the model
    model.save(tmp_path / "m")
    again = SlotModel.load(tmp_path / "m", tiny_lm)
    torch.testing.assert_close(again.read(tiny_lm, texts), model.read(tiny_lm, texts))


def test_a_reading_lora_is_refused_for_the_layer_reader_in_one_line(tiny_lm):
    with pytest.raises(ConfigError, match="reader_rank .* layers reader reads the LM's states without gradients"):
        SlotModel.for_lm(tiny_lm, **LAYERS, reader_rank=2)


def test_reading_lora_targets_that_match_no_module_are_one_line_naming_the_option(tiny_lm):
    with pytest.raises(ConfigError, match=r"reader_targets \(--reader-targets\): option targets='nosuch' matches no"):
        SlotModel.for_lm(tiny_lm, **SMALL, reader_rank=2, reader_targets="nosuch")
