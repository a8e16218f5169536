"""The prompt format of generator training (``AdapterTrainConfig.prompt_format``): plain is exactly memkit's
historical layout, chat lays the questions out in the tokenizer's template, and either weighs only the answers."""

from __future__ import annotations

import random

import pytest
import torch

from experiments.tiny_model import CHAT_TEMPLATE
from memkit.adapters.generator import AdapterGenerator
from memkit.adapters.train import AdapterTrainConfig, ContextQA, batch_loss, qa_sequence, train_generator
from memkit.errors import ConfigError
from memkit.lm import FrozenLM
from memkit.prompts import QAFormat, qa_prompt

QAS = [("Where does Ada Varn live?", "Port Elsin"), ("What  does she\ndo?", "keeper"), ("Born?", "1950")]
ITEMS = [ContextQA(["Ada Varn lives in Port Elsin. She is a weaver."], [("Where does Ada Varn live?", "Port Elsin")]),
         ContextQA(["Bo Kell lives in Dunmere. He is a baker."], [("What does Bo Kell do?", "baker")])]


def old_plain_sequence(lm, qas):
    """qa_sequence as it was before prompt formats (the layout the packaged generator was trained on)."""
    ids, weights = list(lm.bos_ids), [0.0] * len(lm.bos_ids)
    for i, (question, answer) in enumerate(qas):
        head = lm.encode(("\n\n" if i else "") + qa_prompt(question))
        tail = lm.encode(" " + answer + "\n")
        ids += head + tail
        weights += [0.0] * len(head) + [1.0] * len(tail)
    return ids, weights


@pytest.fixture(scope="module")
def chat_lm(tiny_model_dir):
    """The tiny llama with a chat template on its tokenizer (its own copy: the shared tiny_lm keeps none)."""
    lm = FrozenLM.load(str(tiny_model_dir("llama")), device="cpu", dtype="float32")
    lm.tokenizer.chat_template = CHAT_TEMPLATE
    return lm


@pytest.mark.parametrize("n", [1, 2, 3])
def test_plain_is_exactly_the_old_layout(tiny_lm, n):
    expected = old_plain_sequence(tiny_lm, QAS[:n])
    assert qa_sequence(tiny_lm, QAS[:n]) == expected
    assert qa_sequence(tiny_lm, QAS[:n], QAFormat.of("plain")) == expected


def test_plain_is_the_old_layout_with_a_bos_too(tiny_lm, monkeypatch):
    monkeypatch.setattr(tiny_lm, "_bos_ids", [0])
    assert qa_sequence(tiny_lm, QAS) == old_plain_sequence(tiny_lm, QAS)
    assert qa_sequence(tiny_lm, QAS)[0][0] == 0


def test_chat_weighs_only_the_assistants_answers(chat_lm):
    fmt = QAFormat.of("chat", chat_lm.tokenizer)
    ids, weights = qa_sequence(chat_lm, QAS[:2], fmt)
    assert len(ids) == len(weights)
    text = chat_lm.decode(ids, skip_special_tokens=False)
    assert text == ("<|user|>\nWhere does Ada Varn live?</s>\n<|assistant|>\nPort Elsin</s>\n"
                    "<|user|>\nWhat does she do?</s>\n<|assistant|>\nkeeper</s>\n")
    answered = chat_lm.decode([i for i, w in zip(ids, weights) if w == 1.0], skip_special_tokens=False)
    assert answered == "Port Elsin</s>\nkeeper</s>\n"
    assert set(weights) == {0.0, 1.0}
    # the template's end of turn is one special token, weighted: the model learns to stop
    eos = chat_lm.tokenizer.eos_token_id
    assert [w for i, w in zip(ids, weights) if i == eos] == [0.0, 1.0, 0.0, 1.0]


def test_the_loss_reads_the_configured_format(chat_lm):
    gen = AdapterGenerator.for_lm(chat_lm, chat_lm.target_modules("attn_out"), state_rank=8, svd_rank=2, alpha=8.0)
    chat_gen = AdapterGenerator.for_lm(chat_lm, chat_lm.target_modules("attn_out"), state_rank=8, svd_rank=2,
                                       alpha=8.0, prompt_format="chat")
    common = dict(state_rank=8, svd_rank=2, alpha=8.0, chunk_tokens=8, merge_extra=0.0, w_contrast=0.0,
                  w_reconstruction=0.0, w_completion=0.0)
    with torch.no_grad():
        plain, _ = batch_loss(chat_lm, gen, ITEMS, AdapterTrainConfig(**common), random.Random(0))
        chat, _ = batch_loss(chat_lm, chat_gen, ITEMS, AdapterTrainConfig(prompt_format="chat", **common),
                             random.Random(0))
    assert float(plain) != pytest.approx(float(chat))


def test_a_format_the_generator_was_not_built_for_is_refused(chat_lm, tiny_lm):
    gen = AdapterGenerator.for_lm(tiny_lm, tiny_lm.target_modules("attn_out"), state_rank=8, svd_rank=2, alpha=8.0)
    cfg = AdapterTrainConfig(state_rank=8, svd_rank=2, alpha=8.0, chunk_tokens=8, max_steps=1, minutes=0,
                             prompt_format="chat")
    with pytest.raises(ConfigError, match="--prompt-format"):       # no chat template on this tokenizer
        train_generator(tiny_lm, gen, ITEMS, cfg, log=lambda _: None)
    gen = AdapterGenerator.for_lm(chat_lm, chat_lm.target_modules("attn_out"), state_rank=8, svd_rank=2, alpha=8.0)
    with pytest.raises(ConfigError, match="plain prompt format but training asks for chat"):
        train_generator(chat_lm, gen, ITEMS, cfg, log=lambda _: None)
    with pytest.raises(ConfigError, match="--prompt-format is one of plain, fewshot, chat"):
        AdapterTrainConfig(prompt_format="fancy").validate()
