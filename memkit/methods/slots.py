"""Memory slots (after CMT, built on MAC): each document is compressed into a few memory vectors kept in the
store with a self-matching key; a question is read by the same machinery into its own vectors and key, finds
the best-matching memories, aggregates them (weighted by their matching scores) into a key/value prefix, and
the frozen LM answers reading that prefix; the documents never enter the prompt. A document longer than the
slot model's window (``max_tokens``) is read whole, window by window, and its record carries one group of memory
vectors per window (``[c * m, e]``), all found by the one key of the document and aggregated together, sharing
the document's weight; nothing is cut.

The paper's techniques are switches in the same code, so each can be measured: the option ``aggregation``,
``topk`` (the ``top_k`` best-matching memories; CMT) or ``all`` (the whole bank; MAC), and, chosen when the
model is trained (``memkit train slots``) and recorded with it, the objective (``qa`` or ``memory-aware``) and
self-matching (keys trained to find their documents, scores weighing the aggregation; off, as in MAC, every
memory weighs the same).

Documents are found by the slot model's self-matching key, or (option ``keys=lexical``) by hashed words, the
keys a hop model (option ``hop_model``, ``memkit train hop``) searches among for a second retrieval hop.

The slot model is a directory written by ``memkit train slots`` (option ``model``); left empty, the one packaged
for the world LM is used (none is packaged yet), and any other model is refused with the command that trains
one. Knows nothing of storage or the CLI.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Sequence

import numpy as np
import torch

from memkit.errors import ConfigError
from memkit.methods.base import Answer, Context, QuestionRead, Record, Retrieved, Source, best_first, snippet
from memkit.methods.common import HopOption, PayloadConfig, TextAnswerer, stored
from memkit.packaged import WORLD_SLOTS, installed
from memkit.prompts import QAFormat

PACKAGED_SLOTS = WORLD_SLOTS
AGGREGATIONS = ("topk", "all")
KEYS = ("slots", "lexical")
SLOTS = "slots"
"""Payload name of a document's memory vectors."""
ALL = 1_000_000_000
"""Search size that stands for the whole bank (the index returns what it holds)."""


@dataclasses.dataclass
class KeysOption:
    """The option of a slot-reading method that says which key finds a document."""

    keys: str = "slots"
    """Which key a document is found by: ``slots`` (the slot model's self-matching key) or ``lexical`` (hashed
    words, queries IDF-weighted: the keys a hop model for the world lives among)."""


@dataclasses.dataclass
class SlotsConfig(PayloadConfig, KeysOption, HopOption):
    """Options of memory slots."""

    model: str = ""
    """Directory of a trained slot model (memkit train slots); empty: the one packaged for the world LM."""
    aggregation: str = "topk"
    """topk (the top_k best-matching memories are aggregated; CMT) or all (the whole bank; MAC)."""
    top_k: int = 4
    """Memories a question aggregates when aggregation=topk (ask --top-k overrides it)."""
    batch_size: int = 16
    """Documents read together at ingest."""

    def validate(self, method: str) -> None:
        super().validate(method)
        if self.aggregation not in AGGREGATIONS:
            raise ConfigError(f"option aggregation of method {method} must be topk or all")
        if self.top_k < 1:
            raise ConfigError(f"option top_k of method {method} must be at least 1")
        if self.batch_size < 1:
            raise ConfigError(f"option batch_size of method {method} must be at least 1")
        if self.keys not in KEYS:
            raise ConfigError(f"option keys of method {method} must be one of {', '.join(KEYS)}, not {self.keys!r}")
        if self.hop_model and self.keys != "lexical" and method == "slots":
            raise ConfigError("option hop_model of method slots searches among lexical keys; set keys=lexical")


def resolve_model(lm, path: str):
    """The slot model at ``path`` (or the packaged one), refusing one trained for another model."""
    from memkit.slots import SlotModel

    if path:
        return SlotModel.load(path, lm)
    if not installed(PACKAGED_SLOTS):
        raise ConfigError("this memkit carries no packaged slot model; train one with `memkit train slots --out DIR` "
                          "and pass -o model=DIR")
    try:
        return SlotModel.load(PACKAGED_SLOTS, lm)
    except ConfigError:
        raise ConfigError("the packaged slot model belongs to the packaged world LM, not to this model; train one "
                          "with `memkit train slots --model MODEL --out DIR` and pass -o model=DIR") from None


@dataclasses.dataclass
class SlotsPlan:
    """What the slots method gathered for one question: the memories to aggregate (each ``[windows * slots,
    mem_dim]``), their retrieval scores, and the question's pooled vectors when the engine's search read them."""

    memories: list[np.ndarray]
    scores: list[float]
    question: torch.Tensor | None = None


class Slots:
    name = "slots"
    needs_payload = True

    def __init__(self, lm, config: SlotsConfig):
        self.lm = lm
        self.config = config
        self.model = resolve_model(lm, config.model).eval()
        self.key_dim = self.model.config.key_dim
        self.words = None
        """With ``keys=lexical``: the ``LexicalEmbedder`` whose keys find documents (else None)."""
        self.hop = None
        """The second retrieval hop (``memkit.hops.HopModel``, among the lexical keys), or None."""
        if config.keys == "lexical":
            from memkit.embedders import LexicalEmbedder

            self.words = LexicalEmbedder()
            self.key_dim = self.words.dim
            self.weigh_queries = self.words.weigh_queries
            self.hop = config.load_hop(self.words)
        self.answerer = TextAnswerer(lm, config.max_new_tokens, QAFormat.of(self.model.config.prompt_format, lm.tokenizer))

    def config_dict(self) -> dict:
        return self.config.to_dict()

    # ---- ingest -----------------------------------------------------------------------------------------
    def memories(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Each text read whole (``SlotModel.read_groups``, ``batch_size`` windows at a time): memory vectors
        ``[n, C, m, e]`` of its windows and which are real ``[n, C]``."""
        c = self.model.config
        if not texts:
            return torch.zeros(0, 1, c.slots, c.mem_dim), torch.zeros(0, 1, dtype=torch.bool)
        with torch.no_grad():
            return self.model.read_groups(self.lm, list(texts), batch_size=self.config.batch_size)

    def encode(self, texts: Sequence[str]) -> list[list[Record]]:
        groups, present = self.memories(texts)
        e = self.model.config.mem_dim
        keys = self._keys(texts, groups, present)
        return [[Record(kind="slots", key=keys[i],
                        tensors=stored({SLOTS: groups[i, present[i]].reshape(-1, e).cpu().numpy()},
                                       self.config.payload_dtype))]
                for i in range(len(texts))]

    # ---- ask --------------------------------------------------------------------------------------------
    def query_key(self, question: str) -> np.ndarray:
        return self.query_keys([question])[0]

    def query_keys(self, questions: Sequence[str]) -> list[np.ndarray]:
        if self.words is not None:                      # words alone: no slot reading needed
            return list(self._keys(questions, None, None))
        return [r.key for r in self.read_questions(questions)]

    def _keys(self, texts: Sequence[str], groups, present) -> np.ndarray:
        """The keys that find ``texts``: their words' with ``keys=lexical``, else the slot model's of their
        memory vectors (``groups``, ``present``)."""
        if self.words is not None:
            return np.asarray(self.words.embed(list(texts)), dtype=np.float32)
        with torch.no_grad():
            return self.model.key(groups, present).cpu().numpy()

    def read_questions(self, questions: Sequence[str]) -> list[QuestionRead]:
        """Each question read once (in batches): its self-matching key (or, with ``keys=lexical``, its words'
        key) and its pooled vectors, which ``combine`` keeps for the aggregation."""
        groups, present = self.memories(questions)
        keys = self._keys(questions, groups, present)
        with torch.no_grad():
            memory = self.model.pool(groups, present)
        return [QuestionRead(key=k, state=v) for k, v in zip(keys, memory)]

    def search_size(self, top_k: int | None) -> int:
        return ALL if self.config.aggregation == "all" else (top_k or self.config.top_k)

    def combine(self, question: str, retrieved: list[Retrieved], top_k: int | None = None, *,
                read: QuestionRead | None = None) -> Context:
        start = time.perf_counter()
        ranked = [r for r in best_first(retrieved, self.search_size(top_k))
                  if r.payload and SLOTS in r.payload]
        plan = SlotsPlan(memories=[np.array(r.payload[SLOTS], dtype=np.float32) for r in ranked],
                         scores=[r.score for r in ranked], question=read.state if read is not None else None)
        sources = [Source(r.document_id, r.source, r.score, r.kind, r.span, snippet(r.text), hop=r.hop)
                   for r in ranked]
        return Context(question=question, sources=sources, plan=plan,
                       timings={"gather": (time.perf_counter() - start) * 1000})

    def prefix(self, questions: list[str], plans: list[SlotsPlan]):
        """One batched prefix: each question's vectors (read now where its plan has none) aggregated over its
        plan's memories (a long document's groups each a memory, sharing the document's score and weight)."""
        c = self.model.config
        groups = []
        for x in plans:
            per = []
            for m, s in zip(x.memories, x.scores):
                windows = np.asarray(m, dtype=np.float32).reshape(-1, c.slots, c.mem_dim)
                per.extend((w, s, len(windows)) for w in windows)
            groups.append(per)
        n = max(1, max(len(g) for g in groups))
        mem = torch.zeros(len(plans), n, c.slots, c.mem_dim)
        scores = torch.zeros(len(plans), n)
        present = torch.zeros(len(plans), n, dtype=torch.bool)
        counts = torch.ones(len(plans), n)
        for i, per in enumerate(groups):
            for j, (m, s, k) in enumerate(per):
                mem[i, j] = torch.from_numpy(m)
                scores[i, j] = s
                present[i, j] = True
                counts[i, j] = k
        device = self.model.device
        unread = [i for i, x in enumerate(plans) if x.question is None]
        with torch.no_grad():
            read = {}
            if unread:
                qgroups, qpresent = self.model.read_groups(self.lm, [questions[i] for i in unread])
                read = dict(zip(unread, self.model.pool(qgroups, qpresent)))
            question = torch.stack([read[i] if i in read else x.question for i, x in enumerate(plans)])
            agg = self.model.aggregate(question, mem.to(device), scores.to(device), present.to(device),
                                       counts.to(device))
            return self.model.prefix(agg)

    def answer(self, context: Context) -> Answer:
        return self.answer_many([context])[0]

    def answer_many(self, contexts, batch_size: int = 8) -> list[Answer]:
        contexts = list(contexts)
        answers = self.answerer.answer_prepared(
            contexts, self.name, lambda cs: {"prefix": self.prefix([c.question for c in cs], [c.plan for c in cs])},
            "aggregate", batch_size=batch_size)
        for a, c in zip(answers, contexts):
            a.notes.memories = len(c.plan.memories)
            a.usage.read_tokens = self.read_tokens(c.question)
        return answers

    def read_tokens(self, question: str) -> int:
        """Tokens the slot model reads for a question (its key and aggregation): the question and the slots (per
        window, for a question longer than one)."""
        return sum(len(w) + self.model.config.slots for w in self.model.windows(self.lm, question))
