"""Online LoRA fine-tuning: the frozen LM learns the stream's documents into a low-rank adapter (the SFT baseline).

Each ingested document is trained into one LoRA (next-token loss on the document's tokens, in windows when it is
longer than ``max_tokens``), in stream order, with one AdamW optimizer that persists across documents. The LoRA
factors and the optimizer's moments are the method's state (``StatefulMethod``): the engine keeps them in the
store, so a reopened store answers exactly as before and a later ingest continues the same training. Questions
are answered closed-book with the LoRA active; fine-tuned weights cannot say which document a fact came from, so
answers carry no sources and their info says so. The base weights are never changed: the factors live beside
the model and reach it only through ``FrozenLM``'s delta hook.

Knows nothing of storage or the CLI. The maths of the factors (peft-compatible) is in ``memkit.lora``.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import torch

from memkit.errors import ConfigError
from memkit.lora import LoraFactors, next_token_loss, resolve_targets, windows
from memkit.methods.base import Answer, AnswerNotes, Context, Record, Retrieved
from memkit.methods.common import TextAnswerer, TextFormatConfig, text_format

NO_SOURCES = "fine-tuned weights cannot say which documents an answer came from"


@dataclasses.dataclass
class FinetuneConfig(TextFormatConfig):
    """Options of online LoRA fine-tuning (all recorded with the store and in benchmark reports)."""

    rank: int = 8
    """LoRA rank r of every adapted module."""
    alpha: float = 16.0
    """LoRA alpha; the update is scaled by alpha / rank, as in peft."""
    lr: float = 5e-4
    """AdamW learning rate."""
    steps: int = 1
    """Passes over each document; a pass takes ceil(windows / batch) optimizer steps."""
    batch: int = 4
    """Windows per optimizer step."""
    max_tokens: int = 512
    """Tokens per training window (capped at the model's window); longer documents are trained in windows."""
    targets: str = "qv"
    """Modules adapted: qv (attention query/value projections), attn_out, mlp_out, or name suffixes a,b,c."""
    weight_decay: float = 0.0
    """AdamW weight decay on the LoRA factors."""
    max_grad_norm: float = 1.0
    """Gradient norm clip per step (0 turns clipping off)."""
    seed: int = 0
    """Seed of the LoRA A initialisation (B starts at zero, so a fresh LoRA changes nothing)."""

    def validate(self, method: str) -> None:
        super().validate(method)
        checks = [(self.rank >= 1, "rank must be at least 1"), (self.alpha > 0, "alpha must be above 0"),
                  (self.lr > 0, "lr must be above 0"), (self.steps >= 1, "steps must be at least 1"),
                  (self.batch >= 1, "batch must be at least 1"),
                  (self.max_tokens >= 2, "max_tokens must be at least 2"),
                  (self.weight_decay >= 0, "weight_decay must be 0 or more"),
                  (self.max_grad_norm >= 0, "max_grad_norm must be 0 or more"),
                  (bool(self.targets.strip()), "targets must name modules (qv, attn_out, mlp_out or suffixes)")]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"option {message} (method {method})")


class Finetune:
    name = "finetune"
    needs_payload = False
    key_dim = None

    def __init__(self, lm, config: FinetuneConfig):
        self.lm = lm
        self.config = config
        self.answerer = TextAnswerer(lm, config.max_new_tokens, text_format(lm, config))
        self.lora = LoraFactors(lm, resolve_targets(lm, config.targets), rank=config.rank, alpha=config.alpha,
                                seed=config.seed)
        self.optimizer = torch.optim.AdamW(self.lora.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.steps_done = 0
        self.documents_trained = 0
        self.trained_tokens = 0
        """Tokens read with a backward pass since this object was built (the harness's encode cost)."""
        self.last_losses: list[float] = []

    def config_dict(self) -> dict:
        return self.config.to_dict()

    # ---- learning -------------------------------------------------------------------------------------
    def encode(self, texts: Sequence[str]) -> list[list[Record]]:
        """Train the LoRA on each document in order; each keeps a document row and no key."""
        for text in texts:
            self.train_document(text)
        return [[Record(kind="doc", key=None, meta={"trained": True})] for _ in texts]

    def train_document(self, text: str) -> list[float]:
        """``steps`` passes over the document's windows; returns the loss of every optimizer step."""
        cfg = self.config
        parts = windows(self.lm, text, cfg.max_tokens)
        losses: list[float] = []
        with torch.enable_grad():
            for _ in range(cfg.steps):
                for start in range(0, len(parts), cfg.batch):
                    batch = parts[start:start + cfg.batch]
                    loss = next_token_loss(self.lm, batch, self.lora.delta())
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.max_grad_norm > 0:
                        torch.nn.utils.clip_grad_norm_(self.lora.parameters(), cfg.max_grad_norm)
                    self.optimizer.step()
                    self.steps_done += 1
                    self.trained_tokens += sum(len(w) for w in batch)
                    losses.append(float(loss.detach()))
        self.optimizer.zero_grad(set_to_none=True)
        self.documents_trained += 1
        self.last_losses = losses
        return losses

    def document_loss(self, text: str) -> float:
        """Mean next-token loss of ``text`` (in training windows) with the current LoRA; no training."""
        parts = windows(self.lm, text, self.config.max_tokens)
        with torch.no_grad():
            losses = [float(next_token_loss(self.lm, [w], self.lora.delta(detach=True))) * (len(w) - 1)
                      for w in parts]
        return sum(losses) / max(1, sum(len(w) - 1 for w in parts))

    # ---- state ----------------------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, np.ndarray] | None:
        """LoRA factors, AdamW moments and counters; None before any training."""
        if self.steps_done == 0:
            return None
        out = self.lora.arrays()
        for index, entry in self.optimizer.state_dict()["state"].items():
            for key, value in entry.items():
                out[f"optim.{index}.{key}"] = torch.as_tensor(value).detach().float().cpu().numpy()
        out["train.steps"] = np.array(self.steps_done, dtype=np.int64)
        out["train.documents"] = np.array(self.documents_trained, dtype=np.int64)
        return out

    def load_state_tensors(self, tensors: dict[str, np.ndarray]) -> None:
        self.lora.load_arrays(tensors)
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = torch.from_numpy(np.array(value))
        params = self.lora.parameters()
        for index, entry in state.items():
            for name, value in entry.items():
                entry[name] = value if name == "step" else value.to(params[index].device)
        if state:
            current = self.optimizer.state_dict()
            self.optimizer.load_state_dict({"state": state, "param_groups": current["param_groups"]})
        self.steps_done = int(tensors.get("train.steps", np.array(0)))
        self.documents_trained = int(tensors.get("train.documents", np.array(0)))

    # ---- answering ------------------------------------------------------------------------------------
    def query_key(self, question: str):
        return None

    def search_size(self, top_k: int | None) -> int:
        return 0

    def combine(self, question: str, retrieved: list[Retrieved], top_k: int | None = None) -> Context:
        return Context(question=question)

    def _delta(self):
        return None if self.lora.is_zero() else self.lora.delta(detach=True)

    def _notes(self) -> AnswerNotes:
        return AnswerNotes(sources_note=NO_SOURCES, documents_trained=self.documents_trained,
                           lora_steps=self.steps_done)

    def answer(self, context: Context) -> Answer:
        return self.answerer.answer(context, self.name, delta=self._delta(), notes=self._notes())

    def answer_many(self, contexts: Sequence[Context], batch_size: int = 8) -> list[Answer]:
        return self.answerer.answer_many(list(contexts), self.name, batch_size=batch_size, delta=self._delta(),
                                         notes=self._notes())
