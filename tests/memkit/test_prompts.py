"""Prompt formats: plain (memkit's own) and chat (the tokenizer's template), turn by turn."""

from __future__ import annotations

import pytest

from experiments.tiny_model import CHAT_TEMPLATE, build_tokenizer
from memkit.errors import ConfigError
from memkit.prompts import QAFormat, qa_prompt

QAS = [("Where does Ada live?", "Port Elsin"), ("What is her job?", "keeper")]


def test_plain_is_memkits_own_layout():
    fmt = QAFormat.of("plain")
    assert fmt.prompt("Where  does Ada live?", ["Ada lives in Port Elsin."]) == \
        "Ada lives in Port Elsin.\n\nQuestion: Where does Ada live?\nAnswer:"
    turns = fmt.turns(QAS)
    assert turns == [(qa_prompt(QAS[0][0]), " Port Elsin\n"), ("\n\n" + qa_prompt(QAS[1][0]), " keeper\n")]


def test_chat_uses_the_tokenizers_template_turn_by_turn():
    tok = build_tokenizer()
    tok.chat_template = CHAT_TEMPLATE
    fmt = QAFormat.of("chat", tok)
    prompt = fmt.prompt("Where does Ada live?", ["Ada lives in Port Elsin."])
    assert prompt == "<|user|>\nAda lives in Port Elsin.\n\nWhere does Ada live?</s>\n<|assistant|>\n"
    assert not prompt.startswith(tok.bos_token), "the LM adds its own BOS"
    turns = fmt.turns(QAS, ["Ada lives in Port Elsin."])
    assert turns[0] == (prompt, "Port Elsin</s>\n")
    whole = tok.apply_chat_template([{"role": r, "content": c} for q, a in QAS
                                     for r, c in (("user", q), ("assistant", a))], tokenize=False)
    whole = whole.replace("Where does Ada live?", "Ada lives in Port Elsin.\n\nWhere does Ada live?", 1)
    assert "".join(p + a for p, a in turns) == whole[len(tok.bos_token):]
    eos = tok.convert_tokens_to_ids(tok.eos_token)
    assert tok(turns[0][1], add_special_tokens=False)["input_ids"][-2] == eos  # the turn ends with EOS itself


def test_a_format_that_cannot_be_used_names_the_flag():
    with pytest.raises(ConfigError, match="--prompt-format"):
        QAFormat.of("fancy")
    with pytest.raises(ConfigError, match="no chat template.*--prompt-format plain"):
        QAFormat.of("chat", build_tokenizer())
