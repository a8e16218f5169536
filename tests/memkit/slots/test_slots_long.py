"""No silent truncation: a document longer than the slot model's window is read whole, window by window, every
window into its own group of memory vectors that reaches the store, the key and the aggregation; the frozen LM
refuses a text longer than it is asked to read; training reads the same windows and asks in the model's prompt
format."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch

import memkit.slots.train as slot_train
from experiments.tiny_model import build_tiny_model
from memkit.recipes.data import TrainingData
from memkit.adapters.train import ContextQA
from memkit.documents import SourceDocument
from memkit.engine import Engine
from memkit.errors import ConfigError
from memkit.lm import FrozenLM
from memkit.methods import build_method
from memkit.methods.slots import SLOTS
from memkit.slots import SlotModel
from memkit.slots.train import SlotTrainConfig, batch_loss, train_slots
from storage import Store

SMALL = dict(slots=3, mem_dim=16, key_dim=8, prefix_len=4, blocks=1, heads=2)
WINDOW = 48
HEAD = "Ada Varn lives in Port Elsin and keeps the lighthouse there."
EDITED = ("Ada Varn", "Ida Varn")
"""A change in the first window only (the same number of tokens, so every later window stays as it was)."""
FILLER = " The harbour of the northern coast is quiet in winter and the boats stay in."
LONG = HEAD + FILLER * 4
SHORT = "Bo Kell lives in Dunmere."


def long_model(lm, **options) -> SlotModel:
    torch.manual_seed(0)
    return SlotModel.for_lm(lm, **SMALL, max_tokens=WINDOW, seed=1, **options).eval()


def test_a_long_text_is_cut_into_windows_that_keep_every_token(tiny_lm):
    model = long_model(tiny_lm)
    ids = tiny_lm.encode(LONG)
    lead = tiny_lm.bos_ids
    width = WINDOW - len(lead)
    assert len(ids) > 3 * width
    assert len(tiny_lm.encode(LONG.replace(*EDITED, 1))) == len(ids)
    windows = model.windows(tiny_lm, LONG)
    assert len(windows) == math.ceil(len(ids) / width)
    assert all(w[: len(lead)] == lead and len(w) <= WINDOW for w in windows)
    assert [t for w in windows for t in w[len(lead):]] == ids                 # nothing dropped, nothing twice
    sizes = [len(w) - len(lead) for w in windows]
    assert max(sizes) - min(sizes) <= 1                                       # as even as possible
    assert model.windows(tiny_lm, SHORT) == [lead + tiny_lm.encode(SHORT)]    # a text that fits: as before


def test_the_lm_refuses_a_text_longer_than_it_reads_into_slots(tiny_lm):
    model = long_model(tiny_lm)
    with pytest.raises(ConfigError, match="windows"):
        tiny_lm.read_with_slots([LONG], model.slot_embeds, max_length=WINDOW)
    with pytest.raises(ConfigError, match="windows"):
        tiny_lm.read_with_slots([LONG * 2], model.slot_embeds)   # longer than the context less the slots
    with pytest.raises(ConfigError, match="windows"):
        model.read(tiny_lm, [LONG])
    fits = tiny_lm.read_with_slots([SHORT], model.slot_embeds, max_length=WINDOW)
    assert fits.shape == (1, 3, tiny_lm.hidden_size)


def test_every_window_is_read_into_its_own_group(tiny_lm):
    model = long_model(tiny_lm)
    windows = model.windows(tiny_lm, LONG)
    with torch.no_grad():
        groups, present = model.read_groups(tiny_lm, [LONG, SHORT])
        alone = model.read(tiny_lm, windows)
    assert groups.shape == (2, len(windows), 3, 16)
    assert present[0].all() and present[1].tolist() == [True] + [False] * (len(windows) - 1)
    torch.testing.assert_close(groups[0], alone, rtol=1e-4, atol=1e-5)
    assert (groups[1, 1:] == 0).all()
    with torch.no_grad():
        key = model.key(groups, present)
        torch.testing.assert_close(key[0], model.key(alone.reshape(1, -1, 16))[0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(key[1], model.key(groups[1:, 0])[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model.pool(groups, present)[1], groups[1, 0])


def test_a_long_documents_groups_share_its_weight_in_the_aggregation(tiny_lm):
    model = SlotModel.for_lm(tiny_lm, **SMALL).eval()
    torch.manual_seed(0)
    question = torch.randn(1, 3, 16)
    doc, other = torch.randn(1, 1, 3, 16), torch.randn(1, 1, 3, 16)
    scores = torch.tensor([[0.9, 0.7]])
    with torch.no_grad():
        once = model.aggregate(question, torch.cat([doc, other], 1), scores)
        # the same document read as two identical groups: each half its weight, as if it were one memory
        twice = model.aggregate(question, torch.cat([doc, doc, other], 1), torch.tensor([[0.9, 0.9, 0.7]]),
                                counts=torch.tensor([[2, 2, 1]]))
        doubled = model.aggregate(question, torch.cat([doc, doc, other], 1), torch.tensor([[0.9, 0.9, 0.7]]))
    torch.testing.assert_close(twice, once, rtol=1e-5, atol=1e-5)
    assert (doubled - once).abs().max() > 1e-4                          # without counts it would weigh double


@pytest.fixture
def long_slot_dir(tiny_lm, tmp_path):
    return long_model(tiny_lm).save(tmp_path / "long-slots")


def engine_for(lm, path, slot_dir, **options) -> Engine:
    method = build_method("slots", lm, {"model": str(slot_dir), "max_new_tokens": 4, "payload_dtype": "float32",
                                        **options})
    store = Store.create(path, model_id=lm.name, model_revision=None, model_fingerprint=lm.fingerprint,
                         method="slots", method_config=method.config_dict(), key_dim=method.key_dim)
    return Engine(lm, method, store)


def stored(engine, doc_id) -> np.ndarray:
    (memory,) = engine.store.memories(doc_id)
    return engine.store.load_payload(memory.id)[SLOTS]


def test_a_document_longer_than_the_window_is_read_whole(tiny_lm, tmp_path, long_slot_dir):
    """Every window of a long document reaches its stored memory: one group per window, and a word changed in
    the first window only (which a reader keeping the last tokens never sees) changes the memory and its key."""
    engine = engine_for(tiny_lm, tmp_path / "s", long_slot_dir)
    changed = LONG.replace(*EDITED, 1)
    report = engine.ingest([SourceDocument(text=t, source=f"d{i}") for i, t in enumerate([LONG, changed, SHORT])])
    first, second, short = report.added
    count = math.ceil(tiny_lm.count_tokens(LONG) / (WINDOW - len(tiny_lm.bos_ids)))
    assert count >= 4
    memory, other = stored(engine, first), stored(engine, second)
    assert memory.shape == (count * 3, 16)                              # one group of 3 vectors per window
    assert np.abs(memory[:3] - other[:3]).max() > 1e-4                  # the first window's group differs ...
    np.testing.assert_allclose(memory[3:], other[3:], rtol=1e-4, atol=1e-5)   # ... and only it
    [[key], [other_key]] = engine.method.encode([LONG, changed])
    assert np.abs(key.key - other_key.key).max() > 1e-5                 # and so does the key
    windows = engine.method.model.windows(tiny_lm, LONG)
    with torch.no_grad():
        alone = engine.method.model.read(tiny_lm, windows).reshape(-1, 16).numpy()
    np.testing.assert_allclose(memory, alone, rtol=1e-4, atol=1e-5)     # every window's own vectors, in order
    assert stored(engine, short).shape == (3, 16)                        # a short one: one group, as before

    answer = engine.ask("Who keeps the lighthouse in Port Elsin?")
    assert answer.notes.memories == 3 and sorted(s.document_id for s in answer.sources) == sorted(report.added)
    assert engine.ask_many(["Who keeps the lighthouse in Port Elsin?"], batch_size=1)[0].text == answer.text
    engine.store.close()


def test_the_prefix_reads_every_group_of_a_long_document(tiny_lm, tmp_path, long_slot_dir):
    engine = engine_for(tiny_lm, tmp_path / "s", long_slot_dir, top_k=1)
    changed = LONG.replace(*EDITED, 1)
    question = "Who keeps the lighthouse?"
    prefixes = []
    for i, text in enumerate([LONG, changed]):
        [doc_id] = engine.ingest([SourceDocument(text=text, source=f"d{i}")]).added
        hits = [h for h in engine.retrieve(question, 10) if h.document_id == doc_id]
        context = engine.method.combine(question, hits)
        prefixes.append(engine.method.prefix([question], [context.plan]))
    a, b = prefixes
    assert max(float((x - y).abs().max()) for x, y in zip(a.keys + a.values, b.keys + b.values)) > 1e-5
    engine.store.close()


def test_a_question_longer_than_the_window_is_read_whole_too(tiny_lm, long_slot_dir):
    method = build_method("slots", tiny_lm, {"model": str(long_slot_dir)})
    question = "Who keeps the lighthouse?" + FILLER * 2
    [read] = method.read_questions([question])
    assert np.isfinite(read.key).all() and read.state.shape == (3, 16)
    np.testing.assert_allclose(method.query_key(question), read.key, rtol=1e-5, atol=1e-6)
    windows = method.model.windows(tiny_lm, question)
    assert len(windows) > 1
    assert method.read_tokens(question) == tiny_lm.count_tokens(question) + len(windows) * (
        len(tiny_lm.bos_ids) + 3)


# ---- training -------------------------------------------------------------------------------------------------
ITEMS = [ContextQA([LONG], [("Where does Ada Varn live?", "Port Elsin")]),
         ContextQA([SHORT], [("Who draws maps in Kessin?", "Tomas Brell")]),
         ContextQA(["Mira Okonde was born in Kessin."], [("Where was Mira Okonde born?", "Kessin")]),
         ContextQA(["Ilse Parrow teaches at Dunmere school."], [("Where does Ilse Parrow teach?", "Dunmere school")])]
TRAIN = dict(SMALL, max_tokens=WINDOW, batch_size=4, lr=1e-2, warmup_steps=1, max_steps=2, minutes=0)


def test_training_reads_every_window_of_a_long_document(tiny_lm):
    cfg = SlotTrainConfig(**TRAIN)
    model = SlotModel.for_lm(tiny_lm, **cfg.shape(), seed=1)
    changed = [ContextQA([LONG.replace(*EDITED, 1)], ITEMS[0].qas)] + ITEMS[1:]
    torch.manual_seed(0)
    _, plain = batch_loss(tiny_lm, model, ITEMS, cfg)
    torch.manual_seed(0)
    _, edited = batch_loss(tiny_lm, model, changed, cfg)
    # the first window reaches the memory the answers and keys read (a reader keeping the last tokens would
    # give the same answer and match losses)
    assert abs(plain["qa"] - edited["qa"]) > 1e-6 and abs(plain["match"] - edited["match"]) > 1e-6
    report = train_slots(tiny_lm, model, itertools.cycle(ITEMS), cfg, log=lambda line: None)
    assert report.steps == 2


def test_the_memory_aware_loss_predicts_every_token_of_a_long_document(tiny_model_dir, monkeypatch):
    lm = FrozenLM.load(str(tiny_model_dir("llama", max_positions=64)), device="cpu", dtype="float32")
    cfg = SlotTrainConfig(**TRAIN)
    model = SlotModel.for_lm(lm, **cfg.shape(), seed=1)
    seen = []
    real = slot_train.next_token_loss

    def spy(lm, seqs, weights, **kw):
        seen.append([list(s) for s in seqs])
        return real(lm, seqs, weights, **kw)

    monkeypatch.setattr(slot_train, "next_token_loss", spy)
    batch_loss(lm, model, ITEMS, cfg)                      # the LM's context (64) is shorter than the document
    lm_pieces = seen[-1]                                   # the memory-aware loss is taken last
    ids, limit = lm.encode(LONG), 64 - SMALL["prefix_len"]
    assert len(ids) > 64 and all(len(p) <= limit for p in lm_pieces)
    assert [t for p in lm_pieces[: math.ceil(len(ids) / limit)] for t in p] == ids   # LONG is the first document


@pytest.fixture(scope="module")
def chat_lm(tmp_path_factory, tiny_tokenizer):
    path = build_tiny_model("llama", tmp_path_factory.mktemp("chat") / "llama", tokenizer=tiny_tokenizer, chat=True)
    return FrozenLM.load(str(path), device="cpu", dtype="float32")


def test_a_chat_model_trains_on_chat_formatted_answers(chat_lm, monkeypatch):
    trained_on = []
    real = slot_train.answer_sequence

    def spy(lm, question, answer, *args, **kwargs):
        ids, weights = real(lm, question, answer, *args, **kwargs)
        trained_on.append((lm.decode(ids, skip_special_tokens=False),
                           lm.decode([i for i, w in zip(ids, weights) if w], skip_special_tokens=False)))
        return ids, weights

    monkeypatch.setattr(slot_train, "answer_sequence", spy)
    cfg = SlotTrainConfig(**TRAIN, prompt_format="chat")
    model = SlotModel.for_lm(chat_lm, **cfg.shape(), seed=1)
    assert model.config.prompt_format == "chat"
    batch_loss(chat_lm, model, ITEMS, cfg)
    assert len(trained_on) == 4
    text, answered = trained_on[0]
    assert text == "<|user|>\nWhere does Ada Varn live?</s>\n<|assistant|>\nPort Elsin</s>\n"
    assert answered == "Port Elsin</s>\n"
    plain = SlotModel.for_lm(chat_lm, **SlotTrainConfig(**TRAIN).shape(), seed=1)
    with pytest.raises(ConfigError, match="prompt format"):
        train_slots(chat_lm, plain, itertools.cycle(ITEMS), cfg, log=lambda line: None)


def test_the_recipe_probes_in_the_models_format_and_checkpoints(chat_lm, tmp_path, monkeypatch):
    from memkit.recipes.slots import run

    cfg = SlotTrainConfig(**dict(TRAIN, max_steps=2, checkpoint_every=1, eval_every=1000), prompt_format="chat")
    prompts = []
    real_generate = chat_lm.generate
    monkeypatch.setattr(chat_lm, "generate", lambda ps, **kw: prompts.extend(ps) or real_generate(ps, **kw))
    data = TrainingData(stream=itertools.cycle(ITEMS), heldout=ITEMS[:2], summary={"data": ["test"]})
    out = tmp_path / "out"
    run(chat_lm, cfg, data, out, log=lambda line: None)
    assert prompts and all(p.startswith("<|user|>\n") and p.endswith("<|assistant|>\n") for p in prompts)
    assert (out / "checkpoint" / "LATEST").is_file()
    assert json.loads((out / "slots.json").read_text())["config"]["prompt_format"] == "chat"


def test_the_hybrid_keeps_every_group_of_a_long_document(tiny_lm, tmp_path, tiny_generator_dir, long_slot_dir):
    method = build_method("hybrid", tiny_lm, {"generator": str(tiny_generator_dir), "model": str(long_slot_dir),
                                              "chunk_tokens": 16, "max_new_tokens": 4})
    [[record]] = method.encode([LONG])
    count = math.ceil(tiny_lm.count_tokens(LONG) / (WINDOW - len(tiny_lm.bos_ids)))
    assert record.kind == "hybrid" and record.tensors[SLOTS].shape == (count * 3, 16)
    store = Store.create(tmp_path / "h", model_id=tiny_lm.name, model_revision=None,
                         model_fingerprint=tiny_lm.fingerprint, method="hybrid", method_config=method.config_dict(),
                         key_dim=method.key_dim)
    engine = Engine(tiny_lm, method, store)
    report = engine.ingest([SourceDocument(text=t, source=f"d{i}") for i, t in enumerate([LONG, SHORT])])
    answer = engine.ask("Who keeps the lighthouse in Port Elsin?")
    assert answer.notes.memories == 2 and {s.document_id for s in answer.sources} == set(report.added)
    engine.store.close()
