"""The slot model on tiny random LMs: reading, keys, aggregation invariants, prefixes the LM reads, training
leaves the LM untouched, save/load."""

from __future__ import annotations

import pytest
import torch

from memkit.errors import ConfigError
from memkit.lm import FrozenLM
from memkit.slots import SlotModel

DOCS = ["Ada Varn lives in Port Elsin and keeps the lighthouse there.",
        "Tomas Brell draws maps in Kessin for the Sorrel Company.",
        "Mira Okonde leads the Harbour Trust of the northern coast.",
        "Ilse Parrow was born in Dunmere and teaches at its school."]
SMALL = dict(slots=3, mem_dim=16, key_dim=8, prefix_len=4, blocks=2, heads=2)


@pytest.fixture(params=["llama", "gpt2"])
def lm(request, tiny_model_dir):
    return FrozenLM.load(str(tiny_model_dir(request.param)), device="cpu", dtype="float32")


def test_reading_gives_per_document_vectors_and_unit_keys(lm):
    model = SlotModel.for_lm(lm, **SMALL)
    with torch.no_grad():
        memory = model.read(lm, DOCS)
        keys = model.key(memory)
        alone = model.read(lm, DOCS[1:2])
    assert memory.shape == (4, 3, 16) and torch.isfinite(memory).all()
    torch.testing.assert_close(keys.norm(dim=-1), torch.ones(4))
    torch.testing.assert_close(alone[0], memory[1], rtol=1e-4, atol=1e-5)   # left padding changes nothing
    assert (memory[0] - memory[1]).abs().max() > 1e-3                       # different texts, different slots


def test_aggregation_ignores_memory_order_and_padding_and_weighs_by_score(tiny_lm):
    model = SlotModel.for_lm(tiny_lm, **SMALL).eval()
    torch.manual_seed(0)
    question = torch.randn(2, 3, 16)
    memories = torch.randn(2, 4, 3, 16)
    scores = torch.tensor([[0.9, 0.5, 0.2, 0.1], [0.3, 0.8, 0.4, 0.6]])
    with torch.no_grad():
        out = model.aggregate(question, memories, scores)
        order = torch.tensor([2, 0, 3, 1])
        shuffled = model.aggregate(question, memories[:, order], scores[:, order])
        # a padded slot (present False) is as if it were not there
        padded = model.aggregate(question, torch.cat([memories, torch.randn(2, 1, 3, 16)], 1),
                                 torch.cat([scores, torch.ones(2, 1)], 1),
                                 torch.cat([torch.ones(2, 4, dtype=torch.bool), torch.zeros(2, 1, dtype=torch.bool)], 1))
        # a memory with a far lower score barely counts; the same memory with a high one does
        low = model.aggregate(question, memories[:, :2], torch.tensor([[0.9, -5.0], [0.9, -5.0]]))
        first = model.aggregate(question, memories[:, :1], scores[:, :1])
        high = model.aggregate(question, memories[:, :2], torch.tensor([[0.9, 0.9], [0.9, 0.9]]))
        nothing = model.aggregate(question, memories[:, :2], scores[:, :2], torch.zeros(2, 2, dtype=torch.bool))
    assert out.shape == (2, 4, 16)
    torch.testing.assert_close(shuffled, out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(padded, out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(low, first, rtol=1e-4, atol=1e-4)
    assert (high - first).abs().max() > 1e-3
    assert torch.isfinite(nothing).all()


def test_the_prefix_is_read_by_the_lm_and_training_leaves_the_lm_bit_identical(lm):
    model = SlotModel.for_lm(lm, **SMALL)
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    target = torch.tensor(lm.encode(" Port Elsin"))
    losses = []
    for _ in range(4):
        memory = model.read(lm, DOCS[:2])
        question = model.read(lm, ["Where does Ada Varn live?"])
        agg = model.aggregate(question, memory[None], torch.tensor([[0.9, 0.2]]))
        logits, _ = lm.logits([target.tolist()], prefix=model.prefix(agg))
        match = model.key(question) @ model.key(memory).T / 0.1       # the question's own document is 0
        loss = torch.nn.functional.cross_entropy(logits[0, :-1], target[1:]) \
            + torch.nn.functional.cross_entropy(match, torch.tensor([0]))
        loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters()}
        assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), \
            [n for n, g in grads.items() if g is None]
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
    after = lm.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in lm.model.parameters())
    assert losses[-1] < losses[0]                    # the slot model learns; the LM does not change
    with torch.no_grad():
        prefix = model.prefix(agg)
        assert prefix.length == 4 and len(prefix.keys) == lm.num_layers
        with_prefix = lm.generate(["Question: Where does Ada Varn live?\nAnswer:"], max_new_tokens=3, prefix=prefix)
    assert isinstance(with_prefix[0], str)


def test_save_and_load_round_trip_and_refuse_another_model(tiny_lm, tiny_model_dir, tmp_path):
    model = SlotModel.for_lm(tiny_lm, **SMALL, seed=3)
    model.save(tmp_path / "slots", extra={"steps": 0})
    again = SlotModel.load(tmp_path / "slots", tiny_lm)
    for (k, v), (k2, v2) in zip(model.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    with torch.no_grad():
        torch.testing.assert_close(again.read(tiny_lm, DOCS[:1]), model.read(tiny_lm, DOCS[:1]), rtol=0, atol=0)
    other = FrozenLM.load(str(tiny_model_dir("llama", seed=3)), device="cpu", dtype="float32")
    with pytest.raises(ConfigError, match="another base model"):
        SlotModel.load(tmp_path / "slots", other)
    with pytest.raises(ConfigError, match="memkit train slots"):
        SlotModel.load(tmp_path / "missing")
    with pytest.raises(ConfigError, match="divide"):
        SlotModel.for_lm(tiny_lm, mem_dim=10, heads=4)
    with pytest.raises(ConfigError, match="unknown"):
        SlotModel.for_lm(tiny_lm, slot=3)
