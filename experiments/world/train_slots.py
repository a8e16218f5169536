"""The recipe that trains the slot model for a world LM: data from the world, a held-out probe, saving.

Owns: wiring ``experiments.world.adapter_data`` items into ``memkit.slots.train.train_slots``, the probe (on
held-out training-entity questions, the held-out items' documents as the bank: recall@1 and @5 of a question's
own document by the slot keys, and F1 of the answers read from the prefix aggregated over the question's
retrieved memories, beside closed book; with an adapter generator, also read with the delta of the question's
own document, beside that delta alone), and writing the model with its training config and log. Run as
``memkit train slots`` or ``python -m experiments.world.train_slots``. Test entities are never used.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from experiments.world.adapter_data import heldout_items, training_items
from experiments.world.config_args import install_copy, mean_f1, probed_training, recipe_main
from memkit.adapters.train import ContextQA
from memkit.methods.hybrid import PACKAGED_HYBRID_SLOTS
from memkit.methods.slots import PACKAGED_SLOTS
from memkit.prompts import STOP, qa_prompt
from memkit.slots import SlotModel
from memkit.slots.train import SlotTrainConfig, choose, own_delta, train_slots


def probe(lm, model: SlotModel, items: list[ContextQA], *, top_k: int = 4, aggregation: str = "topk",
          baselines: bool = False, generator=None) -> dict:
    """Recall of each item's first question's own document among all the items' documents, and the F1 of its
    answer read from the prefix of its retrieved memories (0-100); with ``generator``, the answer is read with
    the delta of the question's own documents applied too (``hybrid_f1``; baseline: the delta alone,
    ``adapter_f1``)."""
    docs = sorted({d for it in items for d in it.documents})
    index = {d: i for i, d in enumerate(docs)}
    questions = [it.qas[0][0] for it in items]
    golds = [it.qas[0][1] for it in items]
    with torch.no_grad():
        memory = model.read(lm, docs)
        qmem = model.read(lm, questions)
        scores = model.key(qmem) @ model.key(memory).T
        order = scores.argsort(dim=1, descending=True)
        own = [[index[d] for d in it.documents] for it in items]
        r1 = sum(order[i, 0].item() in own[i] for i in range(len(items))) / len(items)
        r5 = sum(bool(set(order[i, :5].tolist()) & set(own[i])) for i in range(len(items))) / len(items)
        rows, present = choose(scores, [[] for _ in items], top_k, aggregation)
        agg = model.aggregate(qmem, memory[rows], scores.gather(1, rows), present)
        prompts = [qa_prompt(q) for q in questions]
        delta = own_delta(lm, generator, docs, own) if generator is not None else None
        prefix = model.prefix(agg)
        preds = lm.generate(prompts, max_new_tokens=12, stop=STOP, prefix=prefix, batch_size=16)
        out = {"slots_f1": mean_f1(preds, golds), "recall_at_1": 100 * r1, "recall_at_5": 100 * r5}
        if delta is not None:
            out["hybrid_f1"] = mean_f1(lm.generate(prompts, max_new_tokens=12, stop=STOP, prefix=prefix,
                                                   delta=delta, batch_size=16), golds)
        if baselines:
            out["closed_f1"] = mean_f1(lm.generate(prompts, max_new_tokens=12, stop=STOP, batch_size=16), golds)
            if delta is not None:
                out["adapter_f1"] = mean_f1(lm.generate(prompts, max_new_tokens=12, stop=STOP, delta=delta,
                                                        batch_size=16), golds)
    return out


def run(lm, cfg: SlotTrainConfig, out: Path, log=print) -> dict:
    """Train a slot model for ``lm`` (fresh, or on from ``cfg.init_from``) and save it to ``out``."""
    start = time.time()
    if cfg.init_from:
        model = SlotModel.load(cfg.init_from, lm)
        for name, value in model.config.shape().items():     # a run that goes on keeps the model's shape
            setattr(cfg, name, value)
        log(f"going on from the slot model in {cfg.init_from}")
    else:
        model = SlotModel.for_lm(lm, seed=cfg.seed, **cfg.shape())
    n_params = sum(p.numel() for p in model.parameters())
    log(f"slot model: {n_params / 1e6:.2f}M parameters for {lm.name}")
    generator = None
    if cfg.with_adapter:
        from memkit.methods.adapter import resolve_generator

        generator = resolve_generator(lm, "" if cfg.with_adapter == "packaged" else cfg.with_adapter).eval()
        log(f"answer losses read the adapter of {cfg.with_adapter} too")
    held = heldout_items()
    settings = {"top_k": cfg.top_k, "aggregation": cfg.aggregation, "generator": generator}
    return probed_training(model, out, cfg, log, start=start,
                           probe=lambda baselines: probe(lm, model, held, baselines=baselines, **settings),
                           train=lambda evaluate: train_slots(lm, model, training_items(cfg.seed), cfg, log=log,
                                                              generator=generator, evaluate=evaluate))


def install(out: Path) -> Path:
    """Copy a trained slot model into the package, beside the packaged world LM: as the hybrid method's when
    it was trained with an adapter, else as the slots method's."""
    trained = json.loads((out / "slots.json").read_text()).get("training", {})
    return install_copy(out, PACKAGED_HYBRID_SLOTS if trained.get("with_adapter") else PACKAGED_SLOTS)


def main(argv: list[str] | None = None) -> None:
    recipe_main(argv, prog="python -m experiments.world.train_slots", description=__doc__.split("\n")[0],
                config_cls=SlotTrainConfig, default_out="build/slot-model", run=run, install=install)


if __name__ == "__main__":
    main()
