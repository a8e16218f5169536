"""Training the adapter generator: only its parameters learn; the frozen LM never changes.

Each step reads a batch of ``ContextQA`` items. An item's documents are read into adapter states (parallel
chunks, gradients on the generator's maps); the item's context state is the sum of its documents' states, plus
now and then the states of other items' documents (``merge_extra``), so the generator learns adapters that
survive retrieve-and-merge. With the normalised delta of that state applied, and the documents nowhere in the
prompt, three next-token losses:
  - ``qa``: the item's questions, one after another in the run's prompt format (``prompt_format``: memkit's
    plain layout or the tokenizer's chat template, ``memkit.prompts.QAFormat``), loss on the answer tokens;
  - ``reconstruction``: the item's first document itself (re-predicting text the adapter has read);
  - ``completion``: for a document of several chunks, a later chunk read with the adapter of the earlier ones
    (self-supervised; ``completion`` weight, documents of at least two chunks).
  - ``contrast`` (optional): a hinge on the answer loss with the adapter of another item of the same shape
    (``contrast_order``) against the own one;
  - ``distill`` (optional, ``w_distill``): distillation from reading, the KL from the LM reading the item's
    documents in its prompt to the LM reading with the adapter, on the answer tokens.
Merged states add as ``merge`` says: a plain sum, or weighted as the method's score merge weighs retrieved
documents. The total is ``qa + w_rec * reconstruction + w_comp * completion + w_contrast * contrast +
w_distill * distill``; the first
``pretrain_steps`` steps (self-supervised pretraining) use reconstruction and completion alone. Optimised by
``memkit.training.run_steps`` (AdamW, linear warm-up then cosine decay, gradient clipping, accumulation over
micro-batches and processes, checkpoints; the run stops at ``max_steps`` or on its wall-clock budget). A step's
micro-batch holds its share of the step's items, and the merges and completion chunks it draws come from a
generator of its own (``part_rng``), so a step computes the same wherever its parts run. The contrast hinge and
merged states pair items within one micro-batch.

Owns: ``train_generator`` and its losses (its options, ``AdapterTrainConfig``, are in ``memkit.train_config``). Must
not know where items come from (the world's are made by ``experiments.world.adapter_data``), storage or the CLI.
"""

from __future__ import annotations

import random
from dataclasses import asdict
from typing import Callable, Iterable, NamedTuple

import torch

from memkit.adapters.encode import chunk_ids, encode_documents
from memkit.adapters.generator import AdapterGenerator
from memkit.adapters.state import AdapterState
from memkit.errors import ConfigError
from memkit.prompts import QAFormat
from memkit.training import (
    ItemBatches, LoopReport, distillation_loss, fitting_teachers, next_token_loss, part_rng, run_steps,
)
from memkit.train_config import AdapterTrainConfig


class ContextQA(NamedTuple):
    """Documents read into one adapter, and questions answerable from them (with their answers)."""

    documents: list[str]
    qas: list[tuple[str, str]]



TrainReport = LoopReport
"""What a training run did: steps, seconds, the loss every step, the probes."""


def qa_sequence(lm, qas: list[tuple[str, str]], fmt: QAFormat | None = None,
                passages: list[str] | None = None) -> tuple[list[int], list[float]]:
    """``bos_ids`` then the question/answer turns in ``fmt`` (plain by default: ``QAFormat.turns``; with
    ``passages`` in the first turn's prompt); weight 1 on each answer as the model writes it (plain: the answer
    and its closing newline; chat: the answer and the template's end of turn), 0 on everything before it. Each
    piece is tokenised on its own, as a prompt is."""
    fmt = fmt or QAFormat()
    ids, weights = list(lm.bos_ids), [0.0] * len(lm.bos_ids)
    for head_text, tail_text in fmt.turns(qas, passages):
        head, tail = lm.encode(head_text), lm.encode(tail_text)
        ids += head + tail
        weights += [0.0] * len(head) + [1.0] * len(tail)
    return ids, weights


def weighted_next_token_loss(lm, seqs: list[list[int]], weights: list[list[float]], delta) -> torch.Tensor:
    """Mean of per-token next-token losses weighted by ``weights`` (of each sequence's tokens) under ``delta``."""
    return next_token_loss(lm, seqs, weights, delta=delta)


def answer_loss(lm, qa: list[tuple[list[int], list[float]]], delta) -> torch.Tensor:
    """``weighted_next_token_loss`` of ``qa_sequence`` outputs (ids and weights per item) under ``delta``."""
    return weighted_next_token_loss(lm, [ids for ids, _ in qa], [w for _, w in qa], delta)


def weighed(states: list[AdapterState], weights: list[float]) -> list[AdapterState]:
    """The states as the adapter method's ``score`` merge adds them: each scaled to unit norm (per target) and
    by its weight, the weights first normalised to sum 1."""
    total = sum(weights) or 1.0
    return [s.scaled_to(w / total) for s, w in zip(states, weights)]


def contrast_order(items: list[ContextQA]) -> list[int]:
    """For each item, another item of the same shape (as many documents and questions) whose adapter it is
    contrasted with: the next one of its shape in the batch, cyclically; an item alone of its shape keeps
    itself (and adds nothing to the hinge's push). Matching shapes means a delta can only pass the hinge by
    what its documents say, not by what kind of questions they answer."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault((len(it.documents), len(it.qas)), []).append(i)
    order = list(range(len(items)))
    for members in groups.values():
        for k, i in enumerate(members):
            order[i] = members[(k + 1) % len(members)]
    return order


def batch_loss(lm, gen: AdapterGenerator, items: list[ContextQA], cfg: AdapterTrainConfig,
               rng: random.Random, *, pretraining: bool = False) -> tuple[torch.Tensor, dict]:
    """The step's total loss and its parts (floats) for ``items``; ``pretraining``: the self-supervised
    losses alone, each at weight 1, the questions unused."""
    docs = sorted({d for it in items for d in it.documents})
    index = {d: i for i, d in enumerate(docs)}
    doc_states = encode_documents(lm, gen, docs, chunk_tokens=cfg.chunk_tokens, grad=True)
    contexts = []
    for it in items:
        chosen = [index[d] for d in it.documents]
        own = len(chosen)
        if rng.random() < cfg.merge_extra and len(docs) > len(chosen):
            others = [i for i in range(len(docs)) if i not in chosen]
            chosen += rng.sample(others, min(len(others), rng.randint(1, cfg.merge_max)))
        states = [doc_states[i] for i in chosen]
        if cfg.merge == "score" and len(states) > 1:
            states = weighed(states, [rng.uniform(0.6, 1.0) if k < own else rng.uniform(0.0, 0.4)
                                      for k in range(len(states))])
        contexts.append(AdapterState.total(states))
    stacked = AdapterState.stack(contexts)
    delta = gen.delta(stacked)
    w_rec, w_comp = (1.0, 1.0) if pretraining else (cfg.w_reconstruction, cfg.w_completion)
    parts: dict[str, torch.Tensor] = {}
    total = torch.zeros((), device=gen.device)
    if not pretraining:
        fmt = QAFormat.of(cfg.prompt_format, lm.tokenizer)
        qa = [qa_sequence(lm, it.qas, fmt) for it in items]
        parts["qa"] = answer_loss(lm, qa, delta)
        total = parts["qa"]
    if not pretraining and cfg.w_distill > 0:
        students = list(qa)
        teachers = fitting_teachers(lm, students, [qa_sequence(lm, it.qas, fmt, it.documents) for it in items])
        parts["distill"] = distillation_loss(lm, [i for i, _ in students], [w for _, w in students],
                                             [i for i, _ in teachers], [w for _, w in teachers], delta=delta)
        total = total + cfg.w_distill * parts["distill"]
    if not pretraining and cfg.w_contrast > 0 and len(items) > 1:
        order = contrast_order(items)
        shifted = gen.delta(AdapterState({n: m[order] for n, m in stacked.mats.items()}, stacked.tokens))
        other = answer_loss(lm, qa, shifted)
        parts["contrast"] = torch.relu(cfg.contrast_margin - (other - parts["qa"]))
        total = total + cfg.w_contrast * parts["contrast"]
    if w_rec > 0:
        own = [lm.bos_ids + lm.encode(it.documents[0])[: lm.max_context - len(lm.bos_ids)] for it in items]
        parts["reconstruction"] = weighted_next_token_loss(lm, own, [[1.0] * len(s) for s in own], delta)
        total = total + w_rec * parts["reconstruction"]
    if w_comp > 0:
        pairs = []
        for d in docs:
            chunks = chunk_ids(lm.encode(d), cfg.chunk_tokens)
            if len(chunks) >= 2:
                j = rng.randint(1, len(chunks) - 1)
                pairs.append(([t for c in chunks[:j] for t in c], lm.bos_ids + chunks[j]))
        if pairs:
            before = encode_documents(lm, gen, [p for p, _ in pairs], chunk_tokens=cfg.chunk_tokens, grad=True)
            seqs = [t for _, t in pairs]
            parts["completion"] = weighted_next_token_loss(lm, seqs, [[1.0] * len(s) for s in seqs],
                                                           gen.delta(AdapterState.stack(before)))
            total = total + w_comp * parts["completion"]
    return total, {k: float(v.detach()) for k, v in parts.items()}


def train_generator(lm, gen: AdapterGenerator, items: Iterable[ContextQA] | ItemBatches, cfg: AdapterTrainConfig,
                    *, evaluate: Callable[[AdapterGenerator], dict] | None = None,
                    log: Callable[[str], None] = print, checkpoint_dir=None) -> TrainReport:
    """Train ``gen`` in place on ``items`` (a deterministic stream: step s reads its items s*B to (s+1)*B, in
    micro-batches of B / parts), checkpointing into ``checkpoint_dir`` (``cfg.checkpoint_every``); the frozen
    LM's weights are never handed to the optimizer."""
    cfg.validate()
    QAFormat.of(cfg.prompt_format, lm.tokenizer)      # a chat format needs the tokenizer's chat template
    if gen.config.prompt_format != cfg.prompt_format:
        raise ConfigError(f"the generator answers in the {gen.config.prompt_format} prompt format but training "
                          f"asks for {cfg.prompt_format} (--prompt-format)")
    batches = items if isinstance(items, ItemBatches) else ItemBatches(items, cfg.batch_size)
    torch.manual_seed(cfg.seed)

    def step_loss(step: int, part: int, parts: int):
        return batch_loss(lm, gen, batches.part(step, part, parts), cfg, part_rng(cfg.seed, step, part),
                          pretraining=step < cfg.pretrain_steps)

    return run_steps(gen, step_loss, cfg, log=log, lm=lm, checkpoint_dir=checkpoint_dir,
                     evaluate=(lambda: evaluate(gen)) if evaluate is not None else None,
                     modes=lambda training: gen.train(training))


def config_dict(cfg: AdapterTrainConfig) -> dict:
    return asdict(cfg)
