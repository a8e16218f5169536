"""Generator training on tiny random models: it learns (loss falls) and only the generator changes."""

from __future__ import annotations

import itertools

import pytest
import torch

from memkit.adapters.generator import AdapterGenerator
from memkit.adapters.train import (AdapterTrainConfig, ContextQA, batch_loss, contrast_order, qa_sequence,
                                   train_generator)
from memkit.errors import ConfigError

ITEMS = [ContextQA(["Ada Varn lives in Port Elsin. She is a weaver."], [("Where does Ada Varn live?", "Port Elsin")]),
         ContextQA(["Bo Kell lives in Dunmere. He is a baker."], [("What does Bo Kell do?", "baker")]),
         ContextQA(["Cy Rone lives in Harnby. She is a smith. She was born in 1950."],
                   [("When was Cy Rone born?", "1950"), ("Where does Cy Rone live?", "Harnby")])]


def test_qa_sequence_weights_only_the_answers(tiny_lm):
    ids, weights = qa_sequence(tiny_lm, ITEMS[2].qas)
    answered = tiny_lm.decode([i for i, w in zip(ids, weights) if w == 1.0])
    assert answered == " 1950\n Harnby\n"
    assert len(ids) == len(weights)


def test_training_lowers_the_loss_and_leaves_the_lm_untouched(tiny_lm):
    gen = AdapterGenerator.for_lm(tiny_lm, tiny_lm.target_modules("attn_out"), state_rank=16, svd_rank=4,
                                  alpha=32.0)
    a2_before = gen.parts[0].a2.weight.detach().clone()
    before = {k: v.clone() for k, v in tiny_lm.model.state_dict().items()}
    cfg = AdapterTrainConfig(state_rank=16, svd_rank=4, alpha=32.0, chunk_tokens=8, batch_size=3, lr=5e-2,
                             warmup_steps=1, max_steps=60, minutes=0, merge_extra=0.0, w_contrast=0.0)
    import random

    with torch.no_grad():
        first, _ = batch_loss(tiny_lm, gen, ITEMS, cfg, random.Random(0))
    report = train_generator(tiny_lm, gen, itertools.cycle(ITEMS), cfg, log=lambda _: None)
    with torch.no_grad():
        last, parts = batch_loss(tiny_lm, gen, ITEMS, cfg, random.Random(0))
    assert report.steps == 60
    # a random tiny LM's logits are small (embeddings of std 0.02), so no delta can move its loss by much
    # more than a nat; 0.2 nats is what a learning generator gets here, and a stuck one gets nothing
    assert float(last) < float(first) - 0.2
    assert set(parts) == {"qa", "reconstruction", "completion"}
    assert not torch.equal(gen.parts[0].a2.weight, a2_before)   # the gradient reached the state's maps
    after = tiny_lm.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_the_contrast_hinge_compares_each_item_with_another_of_its_shape(tiny_lm):
    import random

    from memkit.adapters.encode import encode_documents
    from memkit.adapters.state import AdapterState
    from memkit.adapters.train import answer_loss

    gen = AdapterGenerator.for_lm(tiny_lm, tiny_lm.target_modules("attn_out"), state_rank=16, svd_rank=4,
                                  alpha=32.0)
    torch.manual_seed(3)
    for part in gen.parts:
        torch.nn.init.normal_(part.b.weight, std=2.0)
    cfg = AdapterTrainConfig(state_rank=16, svd_rank=4, alpha=32.0, chunk_tokens=8, merge_extra=0.0,
                             w_reconstruction=0.0, w_completion=0.0, w_contrast=1.0, contrast_margin=5.0)
    with torch.no_grad():
        total, parts = batch_loss(tiny_lm, gen, ITEMS, cfg, random.Random(0))
        states = [AdapterState.total(encode_documents(tiny_lm, gen, it.documents, chunk_tokens=8)) for it in ITEMS]
        stacked = AdapterState.stack(states)
        order = contrast_order(ITEMS)
        assert order == [1, 0, 2]           # the two one-question items swap; the two-question one keeps itself
        shifted = AdapterState({n: m[order] for n, m in stacked.mats.items()})
        seqs = [qa_sequence(tiny_lm, it.qas) for it in ITEMS]
        own = answer_loss(tiny_lm, seqs, gen.delta(stacked))
        other = answer_loss(tiny_lm, seqs, gen.delta(shifted))
    expected = max(0.0, 5.0 - (float(other) - float(own)))
    assert expected > 0
    assert abs(parts["contrast"] - expected) < 1e-4 and abs(parts["qa"] - float(own)) < 1e-5
    assert abs(float(total) - (parts["qa"] + parts["contrast"])) < 1e-4


def test_pretraining_steps_learn_the_self_supervised_losses_alone(tiny_lm):
    import random

    gen = AdapterGenerator.for_lm(tiny_lm, tiny_lm.target_modules("attn_out"), state_rank=16, svd_rank=4,
                                  alpha=32.0)
    cfg = AdapterTrainConfig(state_rank=16, svd_rank=4, alpha=32.0, chunk_tokens=8, batch_size=3, lr=5e-2,
                             warmup_steps=1, max_steps=40, pretrain_steps=40, minutes=0, merge_extra=0.0)
    with torch.no_grad():
        first, parts = batch_loss(tiny_lm, gen, ITEMS, cfg, random.Random(0), pretraining=True)
    assert set(parts) == {"reconstruction", "completion"}       # no question is read while pretraining
    train_generator(tiny_lm, gen, itertools.cycle(ITEMS), cfg, log=lambda _: None)
    with torch.no_grad():
        last, _ = batch_loss(tiny_lm, gen, ITEMS, cfg, random.Random(0), pretraining=True)
    assert float(last) < float(first) - 0.2
    for bad in ({"pretrain_steps": -1}, {"merge_max": 0}, {"merge_extra": 1.5}):
        with pytest.raises(ConfigError):
            AdapterTrainConfig(**bad).validate()


def test_score_merges_weigh_unit_states_as_the_method_does(tiny_lm):
    import random

    from memkit.adapters.encode import encode_documents
    from memkit.adapters.state import AdapterState
    from memkit.adapters.train import weighed

    gen = AdapterGenerator.for_lm(tiny_lm, tiny_lm.target_modules("attn_out"), state_rank=16, svd_rank=4)
    states = encode_documents(tiny_lm, gen, [it.documents[0] for it in ITEMS], chunk_tokens=8)
    out = weighed(states, [3.0, 1.0, 0.0])
    for name in states[0].mats:
        assert float(out[0].mats[name].norm()) == pytest.approx(0.75, rel=1e-5)
        assert float(out[1].mats[name].norm()) == pytest.approx(0.25, rel=1e-5)
        assert float(out[2].mats[name].norm()) == 0.0
    # the adapter method's score merge builds the same state from the same weights
    merged = AdapterState.total(out)
    for name, m in merged.mats.items():
        want = sum(s.mats[name] * (w / s.mats[name].norm()) for s, w in zip(states, [0.75, 0.25, 0.0]))
        torch.testing.assert_close(m, want)
    cfg = AdapterTrainConfig(state_rank=16, svd_rank=4, chunk_tokens=8, batch_size=3, max_steps=1, minutes=0,
                             merge="score", merge_extra=1.0, w_contrast=0.0)
    loss, parts = batch_loss(tiny_lm, gen, ITEMS, cfg, random.Random(0))
    assert torch.isfinite(loss) and "qa" in parts
    with pytest.raises(ConfigError, match="--merge"):
        AdapterTrainConfig(merge="mean").validate()


def test_distillation_pulls_the_adapter_toward_reading_the_documents(tiny_lm):
    """From a generator whose deltas move the LM away from reading, training with the distillation loss ends
    closer to the reading LM than the same training without it."""
    import random

    def run(w_distill: float) -> tuple[dict, dict]:
        gen = AdapterGenerator.for_lm(tiny_lm, tiny_lm.target_modules("attn_out"), state_rank=16, svd_rank=4,
                                      alpha=32.0)
        torch.manual_seed(0)
        with torch.no_grad():
            for part in gen.parts:
                part.b.weight.normal_(std=2.0)
        cfg = AdapterTrainConfig(state_rank=16, svd_rank=4, alpha=32.0, chunk_tokens=8, batch_size=3, lr=2e-2,
                                 warmup_steps=1, max_steps=30, minutes=0, merge_extra=0.0, w_contrast=0.0,
                                 w_reconstruction=0.0, w_completion=0.0, w_distill=w_distill)
        probe = AdapterTrainConfig(**{**cfg.__dict__, "w_distill": 1.0})
        with torch.no_grad():
            _, first = batch_loss(tiny_lm, gen, ITEMS, probe, random.Random(0))
        train_generator(tiny_lm, gen, itertools.cycle(ITEMS), cfg, log=lambda _: None)
        with torch.no_grad():
            _, last = batch_loss(tiny_lm, gen, ITEMS, probe, random.Random(0))
        return first, last

    first, with_distill = run(500.0)
    _, without = run(0.0)
    assert set(first) == {"qa", "distill"} and first["distill"] > 0
    assert with_distill["distill"] < 0.7 * without["distill"]
    with pytest.raises(ConfigError, match="--w-distill"):
        AdapterTrainConfig(w_distill=-0.5).validate()
