"""Training the slot model: only its parameters learn; the frozen LM never changes.

Each step reads a batch of ``ContextQA`` items (documents and questions answered from them). Every document
of the batch is read into memory vectors and a key; every question too. The batch is the bank:
  - ``match`` (self-matching, when ``matching`` is on): a contrastive loss over the batch's documents, so each
    question's key scores its own documents above the others (``match_temperature``);
  - ``qa``: each question aggregates memories of the bank (``aggregation`` ``topk``: its ``top_k``
    best-scoring documents, its own documents always among them, as retrieval should find them; ``all``: the
    whole bank, as MAC) into a prefix, and the LM, reading only that prefix, is scored on the answer tokens;
  - ``lm`` (objective ``memory-aware``): each document's own tokens predicted by the LM reading the prefix
    aggregated from that document's memory alone, so a memory has to hold its document;
  - ``contrast`` (optional, ``w_contrast``): a hinge asking the answer loss through another question's
    aggregated memories (one about other documents) to exceed the loss through the question's own.
With an adapter generator (``with_adapter``; the hybrid method's slot model), every answer loss is taken with
the delta of the question's own documents' summed adapter states applied as well, so the prefix learns what
to add to the adapter rather than to answer alone.
The total is ``qa + w_lm * lm + w_match * match + w_contrast * contrast``, optimised by
``memkit.training.run_steps`` (AdamW, warm-up then cosine decay, clipping, a step plan that fits the time
budget).

Owns: ``SlotTrainConfig`` and ``train_slots``. Must not know where items come from (the world's are made by
``experiments.world.adapter_data``), storage or the CLI.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Iterator

import torch

from memkit.adapters.train import ContextQA
from memkit.errors import ConfigError
from memkit.prompts import qa_prompt
from memkit.slots.model import SlotModel, SlotShape
from memkit.training import LoopConfig, LoopReport, next_token_loss, run_steps

OBJECTIVES = ("memory-aware", "qa")
AGGREGATIONS = ("topk", "all")


@dataclass
class SlotTrainConfig(SlotShape, LoopConfig):
    """Every choice of a slot-model training run: the model's shape (``SlotShape``), the loop's
    (``LoopConfig``) and the losses'; saved beside the model."""

    objective: str = "memory-aware"
    """memory-aware (answer loss, plus each document's LM loss read through its own memory) or qa (MAC)."""
    aggregation: str = "topk"
    """How a question aggregates the bank while training: topk or all."""
    top_k: int = 4
    w_lm: float = 0.3
    """Weight of the memory-aware LM loss (objective memory-aware)."""
    w_match: float = 1.0
    """Weight of the self-matching loss (matching on)."""
    match_temperature: float = 0.05
    w_contrast: float = 0.0
    """Weight of a contrast hinge: the answer loss read through another question's aggregated memories must
    exceed the loss through the question's own by ``contrast_margin`` nats (0: off)."""
    contrast_margin: float = 1.0
    with_adapter: str = ""
    """An adapter generator's directory (``packaged``: the world LM's) whose delta, made from each question's
    own documents, is applied while the answer losses are taken (the hybrid method's slot model); empty: none."""
    batch_size: int = 16

    def validate(self) -> None:
        LoopConfig.validate(self)
        SlotShape.validate(self)
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"--objective is one of {', '.join(OBJECTIVES)}")
        if self.aggregation not in AGGREGATIONS:
            raise ConfigError(f"--aggregation is one of {', '.join(AGGREGATIONS)}")
        if self.batch_size < 2:
            raise ConfigError("--batch-size must be at least 2 (the batch is the bank questions match against)")
        if self.top_k < 1:
            raise ConfigError("--top-k must be at least 1")
        if self.match_temperature <= 0:
            raise ConfigError("--match-temperature must be above 0")


def answer_sequence(lm, question: str, answer: str) -> tuple[list[int], list[float]]:
    """The prompt memkit asks with and the answer (read after a prefix: no ``bos_ids``); weight 1 on the answer
    and its closing newline."""
    head = lm.encode(qa_prompt(question))
    tail = lm.encode(" " + answer + "\n")
    return head + tail, [0.0] * len(head) + [1.0] * len(tail)


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


def own_delta(lm, generator, docs: list[str], gold: list[list[int]]):
    """One delta row per question: the normalised sum of the adapter states of its own documents (rows of
    ``docs``), read without gradients."""
    from memkit.adapters.encode import encode_documents
    from memkit.adapters.state import AdapterState

    with torch.no_grad():
        states = encode_documents(lm, generator, docs, chunk_tokens=128)
        return generator.delta(AdapterState.stack([AdapterState.total([states[j] for j in g]) for g in gold]))


def batch_loss(lm, model: SlotModel, items: list[ContextQA], cfg: SlotTrainConfig,
               generator=None) -> tuple[torch.Tensor, dict]:
    """The step's total loss and its parts (floats); with ``generator``, the answer losses read each
    question's own adapter delta too."""
    docs = sorted({d for it in items for d in it.documents})
    index = {d: i for i, d in enumerate(docs)}
    memory = model.read(lm, docs)                                     # [D, m, e]
    keys = model.key(memory)
    pairs = [(q, a, [index[d] for d in it.documents]) for it in items for q, a in it.qas]
    qmem = model.read(lm, [q for q, _, _ in pairs])                   # [Q, m, e]
    scores = model.key(qmem) @ keys.T                                 # [Q, D]
    gold = [g for _, _, g in pairs]
    parts: dict[str, torch.Tensor] = {}
    rows, present = choose(scores, gold, cfg.top_k, cfg.aggregation)
    rows, present = rows.to(memory.device), present.to(memory.device)
    agg = model.aggregate(qmem, memory[rows], scores.gather(1, rows), present)
    seqs = [answer_sequence(lm, q, a) for q, a, _ in pairs]
    delta = own_delta(lm, generator, docs, gold) if generator is not None else None
    parts["qa"] = next_token_loss(lm, [s for s, _ in seqs], [w for _, w in seqs], prefix=model.prefix(agg),
                                  delta=delta)
    total = parts["qa"]
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
        ones = torch.ones(len(docs), 1, device=memory.device)
        own_prefix = model.prefix(model.aggregate(memory, memory[:, None], ones))
        limit = lm.max_context - model.config.prefix_len
        texts = [lm.encode(d)[:limit] for d in docs]
        parts["lm"] = next_token_loss(lm, texts, [[1.0] * len(t) for t in texts], prefix=own_prefix)
        total = total + cfg.w_lm * parts["lm"]
    return total, {k: float(v.detach()) for k, v in parts.items()}


def train_slots(lm, model: SlotModel, items: Iterator[ContextQA], cfg: SlotTrainConfig, *,
                evaluate: Callable[[SlotModel], dict] | None = None,
                log: Callable[[str], None] = print, generator=None) -> LoopReport:
    """Train ``model`` in place on ``items``; the frozen LM's weights (and ``generator``'s, the adapter
    generator read with ``with_adapter``) are never handed to the optimizer."""
    cfg.validate()
    if model.config.matching != cfg.matching:
        raise ConfigError("the slot model's matching switch differs from the run's (--matching)")
    torch.manual_seed(cfg.seed)

    def step_loss(step: int):
        return batch_loss(lm, model, [next(items) for _ in range(cfg.batch_size)], cfg, generator)

    return run_steps(model.parameters(), step_loss, cfg, log=log,
                     evaluate=(lambda: evaluate(model)) if evaluate is not None else None,
                     modes=lambda training: model.train(training))


def config_dict(cfg: SlotTrainConfig) -> dict:
    return asdict(cfg)
