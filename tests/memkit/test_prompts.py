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


def test_fewshot_is_the_plain_layout_after_worked_examples_whose_answers_are_spans():
    from memkit.prompts import FEWSHOT_EXAMPLES, fewshot_preamble

    fmt = QAFormat.of("fewshot")
    plain = QAFormat.of("plain").prompt("Where does Ada live?", ["Ada lives in Port Elsin."])
    prompt = fmt.prompt("Where does Ada live?", ["Ada lives in Port Elsin."])
    assert prompt == fewshot_preamble() + plain and prompt.endswith("\nAnswer:")
    assert len(FEWSHOT_EXAMPLES) >= 2
    for passage, question, answer in FEWSHOT_EXAMPLES:
        assert answer in passage and "\n" not in answer
        assert f"{qa_prompt(question, [passage])} {answer}\n\n" in fmt.prompt("q")
    turns = fmt.turns(QAS, ["Ada lives in Port Elsin."])
    assert turns[0][0].startswith(fewshot_preamble()) and not turns[1][0].startswith(fewshot_preamble())
    assert [a for _, a in turns] == [a for _, a in QAS[:0]] + [" Port Elsin\n", " keeper\n"]


def test_text_methods_resolve_auto_and_record_the_format(tiny_lm):
    from memkit.methods import build_method

    rag = build_method("rag", tiny_lm, {})
    assert rag.config_dict()["prompt_format"] == "plain"          # auto: not a reference model
    assert rag.answerer.fmt.name == "plain"
    fewshot = build_method("closed_book", tiny_lm, {"prompt_format": "fewshot"})
    assert fewshot.config_dict()["prompt_format"] == "fewshot" and fewshot.answerer.fmt.name == "fewshot"
    with pytest.raises(ConfigError, match="option prompt_format of method prompt must be auto or one of"):
        build_method("prompt", tiny_lm, {"prompt_format": "fancy"})


def test_auto_is_a_reference_models_format_known_by_its_file_whatever_its_name(tiny_lm):
    from memkit.lm import FrozenLM
    from memkit.methods import build_method
    from memkit.reference import REFERENCE_MODELS

    gemma = REFERENCE_MODELS["gemma-3-270m"]
    as_gemma = FrozenLM(tiny_lm.model, tiny_lm.tokenizer, name="/models/renamed.gguf",
                        digest=f"gguf-sha256:{gemma.sha256}")
    assert build_method("rag", as_gemma, {}).config_dict()["prompt_format"] == gemma.prompt_format == "fewshot"
    stored_before_formats = {"chunk_tokens": 32, "top_k": 1}              # a store made before the option existed
    assert build_method("rag", tiny_lm, stored_before_formats).answerer.fmt.name == "plain"


def test_chat_on_a_model_without_a_template_names_the_option(tiny_lm):
    from memkit.methods import build_method

    with pytest.raises(ConfigError, match="option prompt_format=chat needs a chat template.*-o prompt_format=plain"):
        build_method("rag", tiny_lm, {"prompt_format": "chat"})
