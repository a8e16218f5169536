"""The recipe that trains a slot model for any frozen LM on any data: build (or continue) it, probe it on
held-out items, train, save.

Owns: wiring ``TrainingData`` (``memkit.recipes.data``) into ``memkit.slots.train.train_slots``, the probe
(the held-out items' documents as the bank: recall@1 and @5 of a question's own document by the slot keys, and
F1 of the answers read from the prefix aggregated over the question's retrieved memories, beside closed book;
with an adapter generator, also read with the delta of the question's own documents, beside that delta alone),
all asked in the model's prompt format (``--prompt-format``), checkpoints in ``OUT/checkpoint`` (``--resume``
goes on from one), and writing the model with its training config, the data summary and log. Run as ``memkit
train slots``. The world's packaged slot models are installed by ``experiments.world.recipes``.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from memkit.recipes.common import mean_f1, probed_training, run_inputs
from memkit.recipes.data import TrainingData, item_stream
from memkit import checkpoint
from memkit.adapters.train import ContextQA
from memkit.prompts import QAFormat
from memkit.slots import SlotModel
from memkit.slots.train import SlotTrainConfig, choose, own_delta, train_slots


def probe(lm, model: SlotModel, items: list[ContextQA], *, top_k: int = 4, aggregation: str = "topk",
          baselines: bool = False, generator=None, chunk_tokens: int = 128) -> dict:
    """Recall of each item's first question's own document among all the items' documents, and the F1 of its
    answer read from the prefix of its retrieved memories (0-100), asked in the model's prompt format; with
    ``generator``, the answer is read with the delta of the question's own documents (read in chunks of
    ``chunk_tokens``) applied too (``hybrid_f1``; baseline: the delta alone, ``adapter_f1``)."""
    docs = sorted({d for it in items for d in it.documents})
    index = {d: i for i, d in enumerate(docs)}
    questions = [it.qas[0][0] for it in items]
    golds = [it.qas[0][1] for it in items]
    fmt = QAFormat.of(model.config.prompt_format, lm.tokenizer)
    with torch.no_grad():
        memory, windows = model.read_groups(lm, docs)
        qgroups, qwindows = model.read_groups(lm, questions)
        scores = model.key(qgroups, qwindows) @ model.key(memory, windows).T
        order = scores.argsort(dim=1, descending=True)
        own = [[index[d] for d in it.documents] for it in items]
        r1 = sum(order[i, 0].item() in own[i] for i in range(len(items))) / len(items)
        r5 = sum(bool(set(order[i, :5].tolist()) & set(own[i])) for i in range(len(items))) / len(items)
        rows, present = choose(scores, [[] for _ in items], top_k, aggregation)
        agg = model.aggregate(model.pool(qgroups, qwindows),
                              *model.spread(memory[rows], scores.gather(1, rows), present, windows[rows]))
        prompts = [fmt.prompt(q) for q in questions]
        delta = own_delta(lm, generator, docs, own, chunk_tokens=chunk_tokens) if generator is not None else None
        prefix = model.prefix(agg)
        preds = lm.generate(prompts, max_new_tokens=12, stop=fmt.stop, prefix=prefix, batch_size=16)
        out = {"slots_f1": mean_f1(preds, golds), "recall_at_1": 100 * r1, "recall_at_5": 100 * r5}
        if delta is not None:
            out["hybrid_f1"] = mean_f1(lm.generate(prompts, max_new_tokens=12, stop=fmt.stop, prefix=prefix,
                                                   delta=delta, batch_size=16), golds)
        if baselines:
            out["closed_f1"] = mean_f1(lm.generate(prompts, max_new_tokens=12, stop=fmt.stop, batch_size=16), golds)
            if delta is not None:
                out["adapter_f1"] = mean_f1(lm.generate(prompts, max_new_tokens=12, stop=fmt.stop, delta=delta,
                                                        batch_size=16), golds)
    return out


def build(lm, cfg: SlotTrainConfig, log=print) -> SlotModel:
    """A fresh slot model for ``lm`` from ``cfg``, or the one in ``cfg.init_from`` (whose shape then replaces
    ``cfg``'s)."""
    if cfg.init_from:
        model = SlotModel.load(cfg.init_from, lm)
        if cfg.prompt_format != model.config.prompt_format:
            log(f"the slot model in {cfg.init_from} answers in the {model.config.prompt_format} prompt format; "
                f"training goes on in it, not in {cfg.prompt_format}")
        for name, value in model.config.shape().items():     # a run that goes on keeps the model's shape
            setattr(cfg, name, value)
        log(f"going on from the slot model in {cfg.init_from}")
        return model
    return SlotModel.for_lm(lm, seed=cfg.seed, **cfg.shape())


def run(lm, cfg: SlotTrainConfig, data: TrainingData, out: Path, log=print) -> dict:
    """Train a slot model for ``lm`` on ``data`` (fresh, or on from ``cfg.init_from``) and save it to ``out``."""
    start = time.time()
    model = build(lm, cfg, log)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"slot model: {n_params / 1e6:.2f}M parameters for {lm.name}")
    generator = None
    if cfg.with_adapter:
        from memkit.methods.adapter import resolve_generator

        generator = resolve_generator(lm, "" if cfg.with_adapter == "packaged" else cfg.with_adapter).eval()
        if generator.config.prompt_format != cfg.prompt_format:
            from memkit.errors import ConfigError

            raise ConfigError(f"--with-adapter {cfg.with_adapter} was trained with the "
                              f"{generator.config.prompt_format} prompt format and this slot model would be trained "
                              f"with {cfg.prompt_format}; the hybrid reads both in one prompt, so give "
                              f"--prompt-format {generator.config.prompt_format}")
        log(f"answer losses read the adapter of {cfg.with_adapter} too")
    held = data.heldout
    log(f"data: {', '.join(data.summary.get('data', []))}; {len(held)} held-out items "
        f"({data.summary.get('split', '')})")
    settings = {"top_k": cfg.top_k, "aggregation": cfg.aggregation, "generator": generator,
                "chunk_tokens": cfg.adapter_chunk_tokens}
    if data.corpus and cfg.pretrain_steps:
        log(f"corpus: {len(data.corpus)} texts, read in pieces of at most {4 * cfg.max_tokens} characters")
    items = item_stream(data, cfg.pretrain_steps, cfg.batch_size, cfg.seed, piece_chars=4 * cfg.max_tokens)
    cfg.inputs = run_inputs(lm, data.summary)
    return probed_training(model, out, cfg, log, start=start, data=data.summary,
                           probe=lambda baselines: probe(lm, model, held, baselines=baselines, **settings),
                           train=lambda evaluate: train_slots(lm, model, items, cfg, log=log,
                                                              generator=generator, evaluate=evaluate,
                                                              checkpoint_dir=out / checkpoint.RUN_FOLDER))
