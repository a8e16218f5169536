"""Training the slot model: only its parameters learn; the frozen LM never changes.

Each step reads a batch of ``ContextQA`` items (documents and questions answered from them). Every document
of the batch is read whole into memory vectors and a key (a document longer than ``max_tokens`` in windows, one
group of vectors each: ``SlotModel.read_groups``); every question too. The batch is the bank:
  - ``match`` (self-matching, when ``matching`` is on): a contrastive loss over the batch's documents, so each
    question's key scores its own documents above the others (``match_temperature``);
  - ``qa``: each question aggregates memories of the bank (``aggregation`` ``topk``: its ``top_k``
    best-scoring documents, its own documents always among them, as retrieval should find them; ``all``: the
    whole bank, as MAC) into a prefix, and the LM, reading only that prefix, is scored on the answer tokens;
  - ``lm`` (objective ``memory-aware``): each document's own tokens (all of them, in pieces that fit the LM's
    context beside the prefix) predicted by the LM reading the prefix aggregated from that document's memory
    alone (every group of it), so a memory has to hold its whole document;
  - ``contrast`` (optional, ``w_contrast``): a hinge asking the answer loss through another question's
    aggregated memories (one about other documents) to exceed the loss through the question's own;
  - ``distill`` (optional, ``w_distill``): distillation from reading, the KL from the LM reading the question's
    own documents in its prompt to the LM reading the prefix, on the answer tokens.
With an adapter generator (``with_adapter``; the hybrid method's slot model), every answer loss is taken with
the delta of the question's own documents' summed adapter states applied as well (documents read in
``adapter_chunk_tokens`` chunks), so the prefix learns what to add to the adapter rather than to answer alone.
Questions and answers are laid out in the model's prompt format (``prompt_format``: ``memkit.prompts.QAFormat``),
the one its method asks in.
The total is ``qa + w_lm * lm + w_match * match + w_contrast * contrast + w_distill * distill``, optimised by
``memkit.training.run_steps`` (AdamW, warm-up then cosine decay, clipping, a step plan that fits the time
budget, accumulation over micro-batches and processes, checkpoints). With several micro-batches per step
(``grad_accum``, processes), each micro-batch is its own bank.

Owns: ``train_slots`` and its losses (its options, ``SlotTrainConfig``, are in ``memkit.train_config``). Must not
know where items come from (the world's are made by ``experiments.world.adapter_data``), storage or the CLI.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Callable, Iterable

import torch

from memkit.adapters.encode import chunk_ids
from memkit.adapters.train import ContextQA
from memkit.errors import ConfigError
from memkit.prompts import QAFormat
from memkit.slots.model import SlotModel
from memkit.training import (
    ItemBatches, LoopReport, distillation_loss, fitting_teachers, next_token_loss, run_steps,
)
from memkit.train_config import SlotTrainConfig


def answer_sequence(lm, question: str, answer: str, fmt: QAFormat | None = None) -> tuple[list[int], list[float]]:
    """The prompt memkit asks with in ``fmt`` (default plain) and the answer as the model writes it (read after a
    prefix: no ``bos_ids``); weight 1 on the answer and what closes it (plain: its newline; chat: the end of the
    assistant's turn)."""
    [(asking, answered)] = (fmt or QAFormat()).turns([(question, answer)])
    head = lm.encode(asking)
    tail = lm.encode(answered)
    return head + tail, [0.0] * len(head) + [1.0] * len(tail)


def reading_sequences(lm, pairs: list[tuple[str, str, list[str]]], fmt: QAFormat,
                      students: list[tuple[list[int], list[float]]]) -> list[tuple[list[int], list[float]]]:
    """The teacher's side of distillation from reading: per ``(question, answer, documents)``, ``bos_ids``, the
    prompt with the documents in it and the answer, weighted as its student (``answer_sequence``'s output)
    weighs the answer. A prompt too long for the LM's context is not read: that row's student and teacher
    weights become 0 (the student's list is changed in place) and the teacher is the student's tokens
    (``memkit.training.fitting_teachers``)."""
    teachers = []
    for (question, answer, documents), (ids, weights) in zip(pairs, students):
        [(asking, answered)] = fmt.turns([(question, answer)], documents)
        head, tail = list(lm.bos_ids) + lm.encode(asking), lm.encode(answered)
        teachers.append((head + tail, [0.0] * len(head) + weights[len(ids) - len(tail):]))
    return fitting_teachers(lm, students, teachers)


def choose(scores: torch.Tensor, gold: list[list[int]], k: int, aggregation: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per question, the bank rows it aggregates ``[Q, n]`` and which are real ``[Q, n]``: every row for
    ``all``; for ``topk`` its gold rows and then its best-scoring others, ``k`` (or its gold count, if more)."""
    q, d = scores.shape
    if aggregation == "all":
        return torch.arange(d).expand(q, d), torch.ones(q, d, dtype=torch.bool)
    n = max(k, max(len(g) for g in gold))
    rows = torch.zeros(q, n, dtype=torch.long)
    present = torch.zeros(q, n, dtype=torch.bool)
    order = scores.detach().argsort(dim=1, descending=True)
    for i in range(q):
        picked = list(dict.fromkeys(gold[i]))
        for j in order[i].tolist():
            if len(picked) >= max(k, len(gold[i])):
                break
            if j not in picked:
                picked.append(j)
        rows[i, : len(picked)] = torch.tensor(picked)
        present[i, : len(picked)] = True
    return rows, present


def other_rows(gold: list[list[int]]) -> list[int]:
    """For each question, the next one (cyclically) whose documents differ from its own; itself if none does."""
    out = []
    for i, g in enumerate(gold):
        n = len(gold)
        out.append(next(((i + k) % n for k in range(1, n) if set(gold[(i + k) % n]) != set(g)), i))
    return out


def own_delta(lm, generator, docs: list[str], gold: list[list[int]], *, chunk_tokens: int):
    """One delta row per question: the normalised sum of the adapter states of its own documents (rows of
    ``docs``, read in chunks of ``chunk_tokens``), read without gradients."""
    from memkit.adapters.encode import encode_documents
    from memkit.adapters.state import AdapterState

    with torch.no_grad():
        states = encode_documents(lm, generator, docs, chunk_tokens=chunk_tokens)
        return generator.delta(AdapterState.stack([AdapterState.total([states[j] for j in g]) for g in gold]))


def memory_lm_loss(lm, model: SlotModel, docs: list[str], memory: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    """Each document's tokens predicted by the LM reading only the prefix aggregated from its own memory
    (``memory [D, C, m, e]``, its groups ``windows [D, C]``): all its tokens, in consecutive pieces that fit the
    LM's context beside the prefix, each piece after the document's prefix."""
    ones = torch.ones(len(docs), 1, device=memory.device)
    spread = model.spread(memory[:, None], ones, ones.bool(), windows[:, None])
    own = model.aggregate(model.pool(memory, windows), *spread)                  # [D, P, e]
    limit = lm.max_context - model.config.prefix_len
    pieces = [(i, piece) for i, d in enumerate(docs) for piece in chunk_ids(lm.encode(d), limit)]
    rows = torch.tensor([i for i, _ in pieces], device=memory.device)
    texts = [piece for _, piece in pieces]
    return next_token_loss(lm, texts, [[1.0] * len(t) for t in texts], prefix=model.prefix(own[rows]))


def batch_loss(lm, model: SlotModel, items: list[ContextQA], cfg: SlotTrainConfig,
               generator=None, *, pretraining: bool = False) -> tuple[torch.Tensor, dict]:
    """The step's total loss and its parts (floats); with ``generator``, the answer losses read each
    question's own adapter delta too; ``pretraining``: the documents' own LM loss through their memory alone,
    the questions unused."""
    docs = sorted({d for it in items for d in it.documents})
    index = {d: i for i, d in enumerate(docs)}
    memory, windows = model.read_groups(lm, docs)                      # [D, C, m, e], [D, C]
    if pretraining:
        lm_loss = memory_lm_loss(lm, model, docs, memory, windows)
        return lm_loss, {"lm": float(lm_loss.detach())}
    keys = model.key(memory, windows)
    pairs = [(q, a, [index[d] for d in it.documents]) for it in items for q, a in it.qas]
    qgroups, qwindows = model.read_groups(lm, [q for q, _, _ in pairs])
    qmem = model.pool(qgroups, qwindows)                               # [Q, m, e]
    scores = model.key(qgroups, qwindows) @ keys.T                     # [Q, D]
    gold = [g for _, _, g in pairs]
    parts: dict[str, torch.Tensor] = {}
    rows, present = choose(scores, gold, cfg.top_k, cfg.aggregation)
    rows, present = rows.to(memory.device), present.to(memory.device)
    agg = model.aggregate(qmem, *model.spread(memory[rows], scores.gather(1, rows), present, windows[rows]))
    fmt = QAFormat.of(model.config.prompt_format, lm.tokenizer)
    seqs = [answer_sequence(lm, q, a, fmt) for q, a, _ in pairs]
    delta = own_delta(lm, generator, docs, gold, chunk_tokens=cfg.adapter_chunk_tokens) \
        if generator is not None else None
    parts["qa"] = next_token_loss(lm, [s for s, _ in seqs], [w for _, w in seqs], prefix=model.prefix(agg),
                                  delta=delta)
    total = parts["qa"]
    if cfg.w_distill > 0:
        students = [(list(ids), list(w)) for ids, w in seqs]
        teachers = reading_sequences(lm, [(q, a, [docs[j] for j in g]) for q, a, g in pairs], fmt, students)
        parts["distill"] = distillation_loss(lm, [i for i, _ in students], [w for _, w in students],
                                             [i for i, _ in teachers], [w for _, w in teachers],
                                             prefix=model.prefix(agg), delta=delta)
        total = total + cfg.w_distill * parts["distill"]
    order = other_rows(gold) if cfg.w_contrast > 0 else list(range(len(pairs)))
    if order != list(range(len(pairs))):
        other = next_token_loss(lm, [s for s, _ in seqs], [w for _, w in seqs], prefix=model.prefix(agg[order]),
                                delta=delta)
        parts["contrast"] = torch.relu(cfg.contrast_margin - (other - parts["qa"]))
        total = total + cfg.w_contrast * parts["contrast"]
    if cfg.matching and cfg.w_match > 0:
        logp = torch.log_softmax(scores / cfg.match_temperature, dim=1)
        own = torch.zeros_like(scores, dtype=torch.bool)
        for i, g in enumerate(gold):
            own[i, g] = True
        parts["match"] = -(torch.logsumexp(logp.masked_fill(~own, float("-inf")), dim=1)).mean()
        total = total + cfg.w_match * parts["match"]
    if cfg.objective == "memory-aware" and cfg.w_lm > 0:
        parts["lm"] = memory_lm_loss(lm, model, docs, memory, windows)
        total = total + cfg.w_lm * parts["lm"]
    return total, {k: float(v.detach()) for k, v in parts.items()}


def train_slots(lm, model: SlotModel, items: Iterable[ContextQA] | ItemBatches, cfg: SlotTrainConfig, *,
                evaluate: Callable[[SlotModel], dict] | None = None,
                log: Callable[[str], None] = print, generator=None, checkpoint_dir=None) -> LoopReport:
    """Train ``model`` in place on ``items`` (a deterministic stream: step s reads its items s*B to (s+1)*B, in
    micro-batches of B / parts), checkpointing into ``checkpoint_dir`` (``cfg.checkpoint_every``); the frozen
    LM's weights (and ``generator``'s, the adapter generator read with ``with_adapter``) are never handed to the
    optimizer."""
    cfg.validate()
    if model.config.matching != cfg.matching:
        raise ConfigError("the slot model's matching switch differs from the run's (--matching)")
    if model.config.prompt_format != cfg.prompt_format:
        raise ConfigError(f"the slot model answers in the {model.config.prompt_format} prompt format and the run "
                          f"trains in {cfg.prompt_format} (--prompt-format)")
    batches = items if isinstance(items, ItemBatches) else ItemBatches(items, cfg.batch_size)
    torch.manual_seed(cfg.seed)

    def step_loss(step: int, part: int, parts: int):
        micro = batches.part(step, part, parts)
        if len(micro) < 2:
            raise ConfigError(f"--batch-size {cfg.batch_size} split into {parts} micro-batches (processes x "
                              f"--grad-accum) leaves {len(micro)} item per bank; make it at least {2 * parts}")
        return batch_loss(lm, model, micro, cfg, generator, pretraining=step < cfg.pretrain_steps)

    return run_steps(model, step_loss, cfg, log=log, lm=lm, checkpoint_dir=checkpoint_dir,
                     evaluate=(lambda: evaluate(model)) if evaluate is not None else None,
                     modes=lambda training: model.train(training))


def config_dict(cfg: SlotTrainConfig) -> dict:
    return asdict(cfg)
