"""An instruct model's chat template: ``memkit train adapter --prompt-format chat`` trains on conversations laid out
by the tokenizer's template, the generator records the format, and the adapter method answers in it; a tokenizer
without a template is refused in one line naming --prompt-format."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

import memkit.adapters.train as adapter_train
from cli.main import app
from experiments.tiny_model import build_tiny_model
from memkit.adapters.generator import AdapterGenerator
from memkit.documents import SourceDocument
from memkit.engine import Engine
from memkit.lm import FrozenLM
from memkit.methods import build_method
from memkit.prompts import QAFormat
from storage import Store

FACTS = [("Ada Varn", "Port Elsin"), ("Bo Kell", "Dunmere"), ("Cy Rone", "Harnby"), ("Di Moss", "Kessin")]
HELD = [("Ed Lark", "Sorrel")]
SMALL = ["--state-rank", "8", "--svd-rank", "2", "--chunk-tokens", "16", "--base-rank", "2", "--batch-size", "4",
         "--warmup-steps", "1", "--eval-every", "1000", "--eval-max", "1", "--max-steps", "3", "--minutes", "0"]


@pytest.fixture(scope="module")
def chat_model_dir(tmp_path_factory, tiny_tokenizer):
    return build_tiny_model("llama", tmp_path_factory.mktemp("chat") / "llama", tokenizer=tiny_tokenizer, chat=True)


def write_jsonl(path, facts):
    path.write_text("".join(json.dumps({"context": f"{n} lives in {t}.",
                                        "qa": [{"question": f"Where does {n} live?", "answer": t}]}) + "\n"
                            for n, t in facts))
    return path


def train_cmd(model_dir, tmp_path, *extra):
    train, held = write_jsonl(tmp_path / "train.jsonl", FACTS), write_jsonl(tmp_path / "held.jsonl", HELD)
    return CliRunner().invoke(app, ["train", "adapter", "--model", str(model_dir), "--data", f"jsonl:{train}",
                                    "--eval-data", f"jsonl:{held}", "--out", str(tmp_path / "gen"), *SMALL, *extra])


def test_a_chat_model_trains_and_answers_with_its_template(chat_model_dir, tmp_path, monkeypatch):
    trained_on = []
    real_sequence = adapter_train.qa_sequence

    def spy(lm, qas, fmt=None):
        ids, weights = real_sequence(lm, qas, fmt)
        trained_on.append((lm.decode(ids, skip_special_tokens=False),
                           lm.decode([i for i, w in zip(ids, weights) if w], skip_special_tokens=False)))
        return ids, weights

    monkeypatch.setattr(adapter_train, "qa_sequence", spy)
    result = train_cmd(chat_model_dir, tmp_path, "--prompt-format", "chat")
    assert result.exit_code == 0, result.output + result.stderr
    out = tmp_path / "gen"
    saved = json.loads((out / "generator.json").read_text())
    assert saved["config"]["prompt_format"] == "chat" and saved["training"]["prompt_format"] == "chat"

    # training read conversations in the template, the loss on the assistant's answer and its end of turn only
    # (the probe asks the held-out item in the same template; the tiny tokenizer adds no BOS of its own)
    assert trained_on and all(text.startswith("<|user|>\n") for text, _ in trained_on)
    text, answered = next((text, answered) for text, answered in trained_on if "Ed Lark" not in text)
    name, town = next((n, t) for n, t in FACTS if f"Where does {n} live?" in text)
    assert text == f"<|user|>\nWhere does {name} live?</s>\n<|assistant|>\n{town}</s>\n"
    assert answered == f"{town}</s>\n"

    # the method answers through the same template
    lm = FrozenLM.load(str(chat_model_dir), device="cpu", dtype="float32")
    gen = AdapterGenerator.load(out, lm)
    assert gen.config.prompt_format == "chat"
    method = build_method("adapter", lm, {"generator": str(out), "chunk_tokens": 16, "max_new_tokens": 4})
    store = Store.create(tmp_path / "store", model_id=lm.name, model_revision=None, model_fingerprint=lm.fingerprint,
                         method="adapter", method_config=method.config_dict(), key_dim=method.key_dim)
    engine = Engine(lm, method, store)
    engine.ingest([SourceDocument(text=f"{n} lives in {t}.", source=f"d{i}") for i, (n, t) in enumerate(FACTS)])
    prompts, templated = [], []
    real_generate, real_template = lm.generate, lm.tokenizer.apply_chat_template
    monkeypatch.setattr(lm, "generate", lambda ps, **kw: prompts.extend(ps) or real_generate(ps, **kw))
    monkeypatch.setattr(lm.tokenizer, "apply_chat_template",
                        lambda messages, **kw: templated.append(messages) or real_template(messages, **kw))
    question = "Where does Ada Varn live?"
    engine.ask(question)
    engine.store.close()
    assert prompts == [f"<|user|>\n{question}</s>\n<|assistant|>\n"]
    assert prompts == [QAFormat.of("chat", lm.tokenizer).prompt(question)]
    assert templated and templated[-1] == [{"role": "user", "content": question}]


def test_the_chat_format_needs_a_chat_template(tiny_model_dir, tmp_path):
    result = train_cmd(tiny_model_dir("llama"), tmp_path, "--prompt-format", "chat")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--prompt-format" in lines[0] and "chat template" in lines[0], result.stderr
    assert not (tmp_path / "gen").exists()


def test_a_plain_run_on_a_chat_model_records_plain(chat_model_dir, tmp_path):
    result = train_cmd(chat_model_dir, tmp_path)
    assert result.exit_code == 0, result.output + result.stderr
    assert json.loads((tmp_path / "gen" / "generator.json").read_text())["config"]["prompt_format"] == "plain"


def test_going_on_from_a_chat_generator_keeps_its_format(chat_model_dir, tmp_path):
    first = train_cmd(chat_model_dir, tmp_path, "--prompt-format", "chat")
    assert first.exit_code == 0, first.output + first.stderr
    (tmp_path / "first").mkdir()
    for f in ("generator.json", "generator.safetensors"):
        (tmp_path / "first" / f).write_bytes((tmp_path / "gen" / f).read_bytes())
    again = train_cmd(chat_model_dir, tmp_path, "--init-from", str(tmp_path / "first"))
    assert again.exit_code == 0, again.output + again.stderr
    assert "chat prompt format" in again.stderr
    assert json.loads((tmp_path / "gen" / "generator.json").read_text())["config"]["prompt_format"] == "chat"


def test_chat_training_moves_the_generator(chat_model_dir, tmp_path):
    result = train_cmd(chat_model_dir, tmp_path, "--prompt-format", "chat")
    assert result.exit_code == 0, result.output + result.stderr
    lm = FrozenLM.load(str(chat_model_dir), device="cpu", dtype="float32")
    gen = AdapterGenerator.load(tmp_path / "gen", lm)
    assert any(torch.count_nonzero(p.b.weight) for p in gen.parts)


def test_the_probe_asks_in_the_generators_format(chat_model_dir, monkeypatch):
    from memkit.recipes.adapter import probe
    from memkit.adapters.train import ContextQA

    lm = FrozenLM.load(str(chat_model_dir), device="cpu", dtype="float32")
    items = [ContextQA([f"{n} lives in {t}."], [(f"Where does {n} live?", t)]) for n, t in FACTS[:2]]
    for fmt in ("plain", "chat"):
        gen = AdapterGenerator.for_lm(lm, lm.target_modules("attn_out"), state_rank=8, svd_rank=2, alpha=8.0,
                                      prompt_format=fmt)
        asked = []
        real_generate = lm.generate
        monkeypatch.setattr(lm, "generate", lambda ps, **kw: asked.append((ps, kw["stop"])) or real_generate(ps, **kw))
        out = probe(lm, gen, items, 16, baselines=True)
        monkeypatch.undo()
        assert {"adapter_f1", "closed_f1", "prompt_f1"} <= set(out)
        as_fmt = QAFormat.of(fmt, lm.tokenizer)
        questions = [it.qas[0][0] for it in items]
        assert asked[0] == ([as_fmt.prompt(q) for q in questions], as_fmt.stop)            # with the adapter
        assert asked[1] == ([as_fmt.prompt(q) for q in questions], as_fmt.stop)            # closed book
        assert asked[2] == ([as_fmt.prompt(q, it.documents) for q, it in zip(questions, items)], as_fmt.stop)
        assert all(p.startswith("<|user|>\n") == (fmt == "chat") for p in asked[2][0])
