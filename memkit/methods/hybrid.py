"""Adapters and memory slots together: each document is absorbed both ways, and a question is answered by the
frozen LM with the merged adapter of its retrieved documents applied to its weights and the slot prefix
aggregated from their memories in front of its input.

A document becomes one record (kind ``hybrid``) carrying its adapter state (with its SVD basis) and its memory
vectors (one group per window of the slot model for a document longer than one: ``memkit.methods.slots``),
found by one key: the slot model's self-matching key (option ``keys=slots``, the default) or the
adapter's lexical key (``keys=lexical``). A question retrieves the best matches once; the adapter merges the
best ``top_n`` of them (by score, as the ``adapter`` method), the slot model aggregates the best ``top_k`` (or
the whole bank with ``aggregation=all``), and both reach the LM in one generation. The options are the
``adapter`` method's and the ``slots`` method's, with the same meanings; the slot model (option ``model``) is
best one trained with the adapters applied (``memkit train slots --with-adapter``), which the packaged one for
the world LM is. Knows nothing of storage or the CLI.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from memkit.errors import ConfigError
from memkit.methods.adapter import Adapter, AdapterConfig, AdapterPlan
from memkit.methods.base import Answer, Context, QuestionRead, Record, Retrieved
from memkit.methods.common import resolve_fusion
from memkit.methods.slots import SLOTS, Slots, SlotsConfig, SlotsPlan
from memkit.packaged import WORLD_HYBRID_SLOTS, installed

PACKAGED_HYBRID_SLOTS = WORLD_HYBRID_SLOTS
"""The slot model trained with the packaged generator's adapters applied (``memkit train slots
--with-adapter packaged``): the hybrid's default when its option ``model`` is empty, else the slots method's."""


@dataclasses.dataclass
class HybridConfig(AdapterConfig, SlotsConfig):
    """Options of the hybrid: the adapter's and the slots' options, and which key finds a document."""

    keys: str = "slots"
    """Which key a document is found by: ``slots`` (the slot model's self-matching key) or ``lexical`` (the
    adapter's key encoder, option ``embedder``)."""

    def part(self, cls):
        """The options of one part (``AdapterConfig`` or ``SlotsConfig``)."""
        return cls(**{f.name: getattr(self, f.name) for f in dataclasses.fields(cls)})


@dataclasses.dataclass
class HybridPlan:
    """The adapter's plan and the slots' plan for one question."""

    adapter: AdapterPlan
    slots: SlotsPlan


class Hybrid:
    name = "hybrid"
    needs_payload = True
    reads_per_document = 2
    """Each document is read twice at ingest: by the adapter generator and by the slot model."""

    def __init__(self, lm, config: HybridConfig):
        self.lm = lm
        self.config = config
        self.adapter = Adapter(lm, config.part(AdapterConfig))
        slots = dataclasses.replace(config.part(SlotsConfig), keys="slots", hop_model="")  # keys: the hybrid's
        if not slots.model and installed(PACKAGED_HYBRID_SLOTS):
            slots.model = str(PACKAGED_HYBRID_SLOTS)
        self.slots = Slots(lm, slots)
        if self.slots.model.config.prompt_format != self.adapter.generator.config.prompt_format:
            raise ConfigError(f"the hybrid's generator was trained with the {self.adapter.generator.config.prompt_format} "
                              f"prompt format and its slot model with {self.slots.model.config.prompt_format}; train "
                              f"the slot model --with-adapter on that generator")
        self.answerer = self.adapter.answerer
        if config.keys == "lexical":
            self.key_dim = self.adapter.key_dim
            self.weigh_queries = self.adapter.weigh_queries
        else:
            self.key_dim = self.slots.key_dim
        if config.hop_model and config.keys != "lexical":
            raise ConfigError("option hop_model of method hybrid searches among the adapter's keys; set keys=lexical")
        self.hop = self.adapter.hop
        """The second retrieval hop (the adapter's, among its keys), or None."""
        self.fusion = resolve_fusion(config) if config.keys == "lexical" else _slot_key_fusion(config.fusion)
        """How the nearest keys are fused with the database's BM25 (option ``fusion``): with ``keys=lexical`` as
        the adapter method's; with the slot model's keys, ``auto`` means nearest keys alone and the other modes
        apply as asked."""

    def config_dict(self) -> dict:
        return self.config.to_dict()

    # ---- ingest -----------------------------------------------------------------------------------------
    def encode(self, texts: Sequence[str]) -> list[list[Record]]:
        adapters = self.adapter.encode(texts)
        slots = self.slots.encode(texts)
        out = []
        for [a], [s] in zip(adapters, slots):
            key = s.key if self.config.keys == "slots" else a.key
            out.append([Record(kind="hybrid", key=key, tensors={**a.tensors, SLOTS: s.tensors[SLOTS]},
                               meta=dict(a.meta))])
        return out

    # ---- ask --------------------------------------------------------------------------------------------
    def query_key(self, question: str) -> np.ndarray:
        return self.query_keys([question])[0]

    def query_keys(self, questions: Sequence[str]) -> list[np.ndarray]:
        if self.config.keys == "lexical":               # the adapter's keys: no slot reading needed
            return self.adapter.query_keys(questions)
        return [r.key for r in self.read_questions(questions)]

    def read_questions(self, questions: Sequence[str]) -> list[QuestionRead]:
        """The slot model's reading of each question (its key, when ``keys=slots``, and its vectors for the
        aggregation); with ``keys=lexical`` the key is the adapter's."""
        read = self.slots.read_questions(questions)
        if self.config.keys == "lexical":
            keys = self.adapter.query_keys(questions)
            read = [QuestionRead(key=k, state=r.state) for k, r in zip(keys, read)]
        return read

    def search_size(self, top_k: int | None) -> int:
        return max(self.adapter.search_size(top_k), self.slots.search_size(top_k))

    def combine(self, question: str, retrieved: list[Retrieved], top_k: int | None = None, *,
                read: QuestionRead | None = None) -> Context:
        states = [dataclasses.replace(r, payload={k: v for k, v in r.payload.items() if k != SLOTS})
                  if r.payload else r for r in retrieved]
        memories = [dataclasses.replace(r, payload={SLOTS: r.payload[SLOTS]})
                    if r.payload and SLOTS in r.payload else r for r in retrieved]
        a = self.adapter.combine(question, states, top_k)
        s = self.slots.combine(question, memories, top_k, read=read)
        seen = {x.document_id for x in a.sources}
        sources = a.sources + [x for x in s.sources if x.document_id not in seen]
        return Context(question=question, sources=sources, plan=HybridPlan(adapter=a.plan, slots=s.plan),
                       timings={**a.timings, **s.timings})

    def answer(self, context: Context) -> Answer:
        return self.answer_many([context])[0]

    def answer_many(self, contexts, batch_size: int = 8) -> list[Answer]:
        contexts = list(contexts)

        def prepare(cs):
            return {"delta": self.adapter.delta([c.plan.adapter for c in cs]),
                    "prefix": self.slots.prefix([c.question for c in cs], [c.plan.slots for c in cs])}

        answers = self.answerer.answer_prepared(contexts, self.name, prepare, "normalise+aggregate",
                                                batch_size=batch_size)
        for a, c in zip(answers, contexts):
            a.notes.merged_documents = c.plan.adapter.merged
            a.notes.memories = len(c.plan.slots.memories)
            a.usage.read_tokens = self.slots.read_tokens(c.question)
        return answers


def _slot_key_fusion(mode: str):
    """The fusion a hybrid found by slot keys uses: None (nearest keys alone) for ``auto`` and ``dense``."""
    from memkit.fusion import FusionConfig

    return None if mode in ("auto", "dense") else FusionConfig(mode=mode)
