"""The second retrieval hop: a question whose answer needs a document the question itself cannot find (the
document about an entity that only the first document names: "where is the employer of X based?") searches
again from what the first hop found.

A hop model, fitted from data in the store's key space (one text embedder's keys), holds:
  - a gate: a logistic regression on the question's key saying whether a second hop is needed (fitted on
    questions whose first search missed one of their documents, against those whose first search found them
    all), so that questions that need one document keep the memories they had;
  - a prior: a unit vector in the key space, the mean key of the documents second hops must find (what such a
    document looks like: in the world, an organisation's overview), added at weight ``lam`` to each query.
A second hop reads the first hop's best document sentence by sentence: each sentence's key, less what the
question says, plus ``lam`` times the prior is one query; the sentence whose best hit (a document the first hop did not find) scores highest
names the bridge, and that hit is the second hop's document. ``lam`` is chosen on the fitting data.

Owns: ``HopConfig``, ``HopModel`` (gate, prior, the queries of a second hop and the choice of its bridge sentence,
``bridge``), ``sentences``, ``fit_hop_model``
(from banks of documents and questions with their gold documents) and save/load (``memkit.artifacts``).
Knows nothing of storage, methods or the CLI: the caller searches (``Search``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from memkit import artifacts
from memkit.errors import ConfigError

CONFIG_FILE = "hop.json"
WEIGHTS_FILE = "hop.safetensors"
KIND = artifacts.ArtifactKind("hop model", CONFIG_FILE, WEIGHTS_FILE, "memkit train hop")
LAMBDAS = (0.25, 0.5, 1.0, 2.0)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")

Search = Callable[[np.ndarray, int], list[list[tuple[int, float]]]]
"""``search(queries [q, dim], k) -> per query its k best (document index, score)``, best first."""


@dataclass
class HopConfig:
    """A hop model's settings; saved as hop.json beside its tensors."""

    embedder: dict = field(default_factory=dict)
    """The text embedder whose keys the model lives among (its ``describe()``): a store with other keys is
    refused."""
    dim: int = 0
    """Key size."""
    lam: float = 0.5
    """Weight of the prior added to each sentence's key."""
    threshold: float = 0.8
    """The gate opens above this probability."""
    sparse: bool = True
    """Whether the keys are sparse (most dimensions zero: words), which decides how a second-hop query drops
    what the question says (``HopModel.queries``); set from the fitting data."""
    base_model: str = ""
    base_weights: str = ""
    """Empty: a hop model reads keys, not a language model's states (kept for the artifact checks)."""

    def validate(self) -> None:
        if self.dim < 1:
            raise ConfigError("a hop model needs its key size (dim)")
        if self.lam < 0 or not 0 < self.threshold < 1:
            raise ConfigError("hop model: lam must be 0 or more and threshold in (0, 1)")


def sentences(text: str) -> list[str]:
    """``text`` cut at sentence ends (., ! or ? then white space); never empty for a non-blank text."""
    parts = [p.strip() for p in _SENTENCE_END.split(text) if p.strip()]
    return parts or ([text.strip()] if text.strip() else [])


class HopModel(nn.Module):
    """The gate and the prior of second hops in one key space."""

    def __init__(self, config: HopConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.register_buffer("prior", torch.zeros(config.dim))
        self.register_buffer("gate_w", torch.zeros(config.dim))
        self.register_buffer("gate_b", torch.zeros(1))

    def gate(self, question_keys: np.ndarray) -> np.ndarray:
        """``[q]``: the probability that each question (its query key, as searched) needs a second hop."""
        w = self.gate_w.numpy()
        z = np.asarray(question_keys, dtype=np.float32) @ w + float(self.gate_b)
        return 1.0 / (1.0 + np.exp(-z))

    def fires(self, question_keys: np.ndarray) -> np.ndarray:
        """``[q]`` bool: whose gate opens."""
        return self.gate(question_keys) > self.config.threshold

    def queries(self, sentence_keys: np.ndarray, question_key: np.ndarray) -> np.ndarray:
        """``[s, dim]`` unit queries: each sentence's key (as searched) without what the question already says
        (sparse keys: the question's dimensions zeroed, its words; dense keys: the question's direction
        projected out), plus ``lam`` times the prior. What is left of the bridge sentence is what the question
        did not know: the entity the second document is about."""
        keys = np.asarray(sentence_keys, dtype=np.float32)
        question = np.asarray(question_key, dtype=np.float32)
        if self.config.sparse:
            keys = keys * (question == 0)[None]
        else:
            unit = question / max(float(np.linalg.norm(question)), 1e-12)
            keys = keys - (keys @ unit)[:, None] * unit[None]
        q = keys + self.config.lam * self.prior.numpy()[None]
        norms = np.linalg.norm(q, axis=1, keepdims=True)
        return (q / np.maximum(norms, 1e-12)).astype(np.float32)

    @staticmethod
    def bridge(rows: list[list], found: set[int], document=lambda h: h[0], score=lambda h: h[1]) -> list:
        """The hits of the bridge sentence: of each sentence's hits (best first), those of documents the first
        hop did not find (``document(hit)`` not in ``found``); the sentence whose first such hit scores highest
        (``score(hit)``; the first of equals). Empty when every hit was found already."""
        best: list = []
        for row in rows:
            new = [h for h in row if document(h) not in found]
            if new and (not best or score(new[0]) > score(best[0])):
                best = new
        return best

    @staticmethod
    def pick(rows: list[list[tuple[int, float]]], found: set[int]) -> tuple[int, float] | None:
        """The second hop's ``(document, score)`` among sentences' ``(document, score)`` hits (``bridge``), or
        None when every hit was found already."""
        best = HopModel.bridge(rows, found)
        return best[0] if best else None

    # ---- files ---------------------------------------------------------------------------------------------
    def save(self, directory: str | Path, extra: dict | None = None) -> Path:
        return artifacts.save(directory, KIND, self.config, self, extra)

    @classmethod
    def load(cls, directory: str | Path, embedder=None) -> HopModel:
        """A saved hop model; with ``embedder``, refuses one fitted among another embedder's keys."""
        model = artifacts.load(cls, HopConfig, directory, KIND)
        if embedder is not None and model.config.embedder != embedder.describe():
            raise ConfigError(f"the hop model in {directory} was fitted among the keys of {model.config.embedder}, "
                              f"and this method's keys are {embedder.describe()}; fit one for them "
                              f"(memkit.recipes.hop, fit_hop_model, with the same embedder)")
        return model


@dataclass
class HopBank:
    """One bank to fit on: its documents' keys ``[n, dim]`` (as stored), the documents' sentences' query keys
    (per document, ``[s, dim]``, as searched), and its questions: query key ``[dim]`` and gold documents."""

    doc_keys: np.ndarray
    sentence_keys: list[np.ndarray]
    question_keys: np.ndarray
    gold: list[list[int]]


def exact_search(doc_keys: np.ndarray) -> Search:
    """A ``Search`` over ``doc_keys`` by inner product (for fitting; a store searches its own index)."""
    def search(queries: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        scores = np.asarray(queries, dtype=np.float32) @ doc_keys.T
        top = np.argsort(-scores, axis=1)[:, :k]
        return [[(int(j), float(scores[i, j])) for j in row] for i, row in enumerate(top)]
    return search


@dataclass
class HopFit:
    """What fitting saw: per bank examples, and the chosen ``lam``'s second-document recall on them."""

    questions: int = 0
    needs_hop: int = 0
    recall_at_1: float = 0.0
    gate_accuracy: float = 0.0
    lam: float = 0.0
    by_lam: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"questions": self.questions, "needs_hop": self.needs_hop, "lam": self.lam,
                "second_document_recall_at_1": round(self.recall_at_1, 4),
                "gate_accuracy": round(self.gate_accuracy, 4), "recall_at_1_by_lam": self.by_lam}


def _examples(bank: HopBank, first_k: int, reach_k: int) -> list[tuple[int, int, int, bool]]:
    """Per question ``(question row, first document, bridged document or -1, needs a hop)``: the first hop's best
    document; a gold document the question cannot reach (not among its ``reach_k`` best: only a bridge finds
    it), kept as the hop's target when the first hop's best is gold. A gold document that is reachable but
    outside the ``first_k`` is a ranking miss, which a second hop is not for."""
    search = exact_search(bank.doc_keys)
    rows = search(bank.question_keys, max(first_k, reach_k))
    out = []
    for i, (row, gold) in enumerate(zip(rows, bank.gold)):
        reached = {d for d, _ in row}
        unreachable = [g for g in gold if g not in reached]
        first = row[0][0]
        target = unreachable[0] if unreachable and first in gold else -1
        out.append((i, first, target, bool(unreachable)))
    return out


def fit_hop_model(banks: Sequence[HopBank], embedder: dict, *, first_k: int = 4, reach_k: int = 50, seed: int = 0,
                  steps: int = 300, l2: float = 1e-4, log: Callable[[str], None] = lambda _m: None
                  ) -> tuple[HopModel, HopFit]:
    """A hop model fitted on ``banks``: the gate by logistic regression on the questions' keys (label: a gold
    document is out of the question's reach, not among its ``reach_k`` best), the prior as the mean key of
    those documents where the first hop's best was gold, ``lam`` the one of ``LAMBDAS`` that finds most of them
    at rank 1 (past the first hop's ``first_k``) on these banks."""
    if not banks:
        raise ConfigError("fitting a hop model needs at least one bank of documents and questions")
    dim = int(banks[0].doc_keys.shape[1])
    examples = [(b, _examples(b, first_k, reach_k)) for b in banks]
    xs = np.concatenate([b.question_keys for b in banks]).astype(np.float32)
    ys = np.array([need for _, ex in examples for *_, need in ex], dtype=np.float32)
    targets = [(b, i, first, target) for b, ex in examples for i, first, target, _ in ex if target >= 0]
    if not targets or ys.sum() == 0 or ys.sum() == len(ys):
        raise ConfigError(f"the fitting data has {int(ys.sum())} questions of {len(ys)} whose first search misses "
                          "a document: a hop model needs both kinds (give data with questions across two documents)")
    prior = np.mean([b.doc_keys[t] for b, _, _, t in targets], axis=0)
    prior = prior / max(float(np.linalg.norm(prior)), 1e-12)
    # the gate: logistic regression (full batch, Adam), the two classes weighed equally
    torch.manual_seed(seed)
    x, y = torch.from_numpy(xs), torch.from_numpy(ys)
    pos = float(ys.sum())
    weight = torch.where(y > 0, 0.5 / pos, 0.5 / (len(ys) - pos))
    w = torch.zeros(dim, requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        loss = (nn.functional.binary_cross_entropy_with_logits(x @ w + b, y, reduction="none") * weight).sum()
        (loss + l2 * w.pow(2).sum()).backward()
        opt.step()
    config = HopConfig(embedder=dict(embedder), dim=dim, sparse=bool(np.mean(xs != 0) < 0.5))
    model = HopModel(config)
    model.prior.copy_(torch.from_numpy(prior.astype(np.float32)))
    model.gate_w.copy_(w.detach())
    model.gate_b.copy_(b.detach())
    fit = HopFit(questions=len(ys), needs_hop=int(pos),
                 gate_accuracy=float(np.mean((model.gate(xs) > 0.5) == (ys > 0))))
    for lam in LAMBDAS:
        model.config.lam = lam
        hits = 0
        for bank, i, first, target in targets:
            rows = exact_search(bank.doc_keys)(model.queries(bank.sentence_keys[first], bank.question_keys[i]),
                                               first_k + 1)
            got = model.pick(rows, {first})
            hits += got is not None and got[0] == target
        fit.by_lam[lam] = round(hits / len(targets), 4)
        log(f"lam {lam}: second document at rank 1 for {hits} of {len(targets)}")
    fit.lam = max(fit.by_lam, key=lambda k: (fit.by_lam[k], -k))
    fit.recall_at_1 = fit.by_lam[fit.lam]
    model.config.lam = fit.lam
    return model, fit
