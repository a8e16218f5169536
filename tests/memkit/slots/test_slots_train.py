"""Training the slot model on a tiny LM: every objective and switch runs, the loss falls, the LM never changes."""

from __future__ import annotations

import itertools

import pytest
import torch

from memkit.adapters.train import ContextQA
from memkit.errors import ConfigError
from memkit.slots import SlotModel
from memkit.slots.train import SlotTrainConfig, batch_loss, choose, other_rows, train_slots

ITEMS = [ContextQA(["Ada Varn lives in Port Elsin."], [("Where does Ada Varn live?", "Port Elsin")]),
         ContextQA(["Tomas Brell works for the Sorrel Company."], [("Who does Tomas Brell work for?", "Sorrel Company")]),
         ContextQA(["Mira Okonde was born in Kessin.", "Kessin lies on the northern coast."],
                   [("Where was Mira Okonde born?", "Kessin"), ("Where does Kessin lie?", "on the northern coast")]),
         ContextQA(["Ilse Parrow teaches at Dunmere school."], [("Where does Ilse Parrow teach?", "Dunmere school")])]
SMALL = dict(slots=2, mem_dim=16, key_dim=8, prefix_len=3, blocks=1, heads=2)


def test_choose_keeps_the_gold_rows_then_the_best_others():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3], [0.8, 0.1, 0.2, 0.7]])
    rows, present = choose(scores, [[0], [1, 2]], 2, "topk")
    assert rows.tolist() == [[0, 1], [1, 2]] and present.all()
    rows, present = choose(scores, [[0], [1, 2, 3]], 2, "topk")      # more gold than k: all of them
    assert rows[0].tolist()[:2] == [0, 1] and present.tolist() == [[True, True, False], [True, True, True]]
    rows, present = choose(scores, [[0], [1]], 2, "all")
    assert rows.tolist() == [[0, 1, 2, 3]] * 2 and present.all()


@pytest.mark.parametrize("objective,matching,aggregation", [("memory-aware", True, "topk"), ("qa", False, "all")])
def test_training_lowers_the_loss_and_leaves_the_lm_bit_identical(tiny_lm, objective, matching, aggregation):
    cfg = SlotTrainConfig(**SMALL, objective=objective, matching=matching, aggregation=aggregation, top_k=2,
                          batch_size=4, lr=1e-2, warmup_steps=1, max_steps=12, minutes=0, eval_every=6)
    model = SlotModel.for_lm(tiny_lm, **cfg.shape())
    before = {k: v.clone() for k, v in tiny_lm.model.state_dict().items()}
    evals = []
    report = train_slots(tiny_lm, model, itertools.cycle(ITEMS), cfg, log=lambda line: None,
                         evaluate=lambda m: evals.append(m.training) or {"probe": 1.0})
    after = tiny_lm.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in tiny_lm.model.parameters())
    assert report.steps == 12 and [e["step"] for e in report.evals] == [6, 12] and evals == [False, False]
    assert sum(report.losses[-3:]) < sum(report.losses[:3])
    assert not model.training


def test_the_contrast_hinge_pairs_questions_about_other_documents(tiny_lm):
    assert other_rows([[0], [0], [1], [2]]) == [2, 2, 3, 0]
    assert other_rows([[0], [0]]) == [0, 1]                        # nobody to contrast with: itself
    cfg = SlotTrainConfig(**SMALL, w_contrast=1.0, contrast_margin=50.0, batch_size=4, max_steps=1, minutes=0)
    model = SlotModel.for_lm(tiny_lm, **cfg.shape())
    loss, parts = batch_loss(tiny_lm, model, ITEMS, cfg)
    assert parts["contrast"] > 40                                   # a random model is far from a 50-nat gap
    without = SlotTrainConfig(**SMALL, batch_size=4, max_steps=1, minutes=0)
    assert "contrast" not in batch_loss(tiny_lm, model, ITEMS, without)[1]


def test_bad_training_options_are_refused(tiny_lm):
    with pytest.raises(ConfigError, match="objective"):
        SlotTrainConfig(objective="mac").validate()
    with pytest.raises(ConfigError, match="batch-size"):
        SlotTrainConfig(batch_size=1).validate()
    model = SlotModel.for_lm(tiny_lm, **SMALL, matching=False)
    with pytest.raises(ConfigError, match="matching"):
        train_slots(tiny_lm, model, itertools.cycle(ITEMS), SlotTrainConfig(**SMALL, max_steps=1, minutes=0))


def test_with_an_adapter_the_answer_loss_reads_each_questions_own_delta(tiny_lm, tiny_generator_dir):
    from memkit.adapters.generator import AdapterGenerator

    generator = AdapterGenerator.load(tiny_generator_dir, tiny_lm).eval()
    cfg = SlotTrainConfig(**SMALL, batch_size=4, lr=1e-2, warmup_steps=1, max_steps=3, minutes=0,
                          with_adapter=str(tiny_generator_dir))
    model = SlotModel.for_lm(tiny_lm, **cfg.shape())
    torch.manual_seed(0)
    plain = batch_loss(tiny_lm, model, ITEMS, cfg)[1]
    torch.manual_seed(0)
    read = batch_loss(tiny_lm, model, ITEMS, cfg, generator)[1]
    assert abs(read["qa"] - plain["qa"]) > 1e-3, "the adapter changes what the answer loss reads"
    assert read["match"] == pytest.approx(plain["match"], rel=1e-5)       # matching never reads the adapter
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    report = train_slots(tiny_lm, model, itertools.cycle(ITEMS), cfg, log=lambda line: None, generator=generator)
    assert report.steps == 3
    assert all(torch.equal(before[k], v) for k, v in generator.state_dict().items())
    assert all(p.grad is None for p in generator.parameters())


def test_pretraining_steps_train_the_memory_on_the_documents_alone(tiny_lm):
    """The self-supervised steps: each document's own tokens through its own memory, questions unused."""
    cfg = SlotTrainConfig(**SMALL, batch_size=4, lr=1e-2, warmup_steps=1, max_steps=8, minutes=0, pretrain_steps=4)
    model = SlotModel.for_lm(tiny_lm, **cfg.shape())
    loss, parts = batch_loss(tiny_lm, model, ITEMS, cfg, pretraining=True)
    assert set(parts) == {"lm"} and loss.requires_grad
    corpus = [ContextQA(["The lighthouse of Port Elsin stands on the northern mole."], []),
              ContextQA(["Dunmere school was founded by the Sorrel Company in 1950."], [])]
    seen = []
    real = batch_loss

    def spy(lm, model, items, cfg, generator=None, *, pretraining=False):
        seen.append((pretraining, all(not it.qas for it in items)))
        return real(lm, model, items, cfg, generator, pretraining=pretraining)

    import memkit.slots.train as slot_train

    slot_train.batch_loss, restore = spy, slot_train.batch_loss
    try:
        stream = itertools.chain(itertools.islice(itertools.cycle(corpus), 4 * 4), itertools.cycle(ITEMS))
        report = train_slots(tiny_lm, model, stream, cfg, log=lambda line: None)
    finally:
        slot_train.batch_loss = restore
    assert seen == [(True, True)] * 4 + [(False, False)] * 4 and report.steps == 8
    with pytest.raises(ConfigError, match="--pretrain-steps"):
        SlotTrainConfig(**SMALL, pretrain_steps=-1).validate()
