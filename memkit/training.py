"""The training loop the trainable parts of memkit share (the adapter generator, the slot model).

Owns: ``LoopConfig`` (the loop's options), ``learning_rate`` (linear warm-up then cosine decay to
``min_lr_ratio``), ``next_token_loss`` (weighted next-token loss of token sequences read with a delta or after a
prefix) and ``run_steps``: AdamW over the given parameters only (the frozen LM's weights are never handed to
the optimizer), gradient clipping, a step plan that fits a wall-clock budget (re-estimated every 10 steps from
the time per step), a log line every 25 steps and an evaluation every ``eval_every`` steps and at the end.
Knows nothing of what a step computes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
import torch.nn.functional as F

from memkit.errors import ConfigError


@dataclass
class LoopConfig:
    """The loop's own choices, shared by every training config (each adds its model's and losses' options)."""

    lr: float = 1e-3
    """Peak AdamW learning rate."""
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_steps: int = 0
    """Stop after this many steps (0: the time budget decides)."""
    minutes: float = 20.0
    """Wall-clock budget."""
    seed: int = 0
    eval_every: int = 200
    init_from: str = ""
    """A saved model to go on training (its architecture options replace this run's); empty: a fresh one."""

    def validate(self) -> None:
        if self.max_steps <= 0 and self.minutes <= 0:
            raise ConfigError("give a budget: --minutes or --max-steps")
        if self.eval_every < 1:
            raise ConfigError("--eval-every must be at least 1")


@dataclass
class LoopReport:
    steps: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"steps": self.steps, "seconds": round(self.seconds, 1), "loss_every_10": self.losses[::10],
                "evals": self.evals}


def next_token_loss(lm, seqs: list[list[int]], weights: list[list[float]], *, delta=None,
                    prefix=None) -> torch.Tensor:
    """Mean of per-token next-token losses weighted by ``weights`` (one per token of each sequence), the LM
    reading with ``delta`` applied or after its row of ``prefix``."""
    logits, mask = lm.logits(seqs, delta=delta, prefix=prefix)
    width = logits.shape[1]
    w = torch.zeros(len(seqs), width, device=logits.device)
    ids = torch.zeros(len(seqs), width, dtype=torch.long, device=logits.device)
    for i, (s, ws) in enumerate(zip(seqs, weights)):
        ids[i, : len(s)] = torch.tensor(s)
        w[i, : len(ws)] = torch.tensor(ws)
    target_w = w[:, 1:] * mask[:, 1:].to(w.dtype)
    keep = target_w > 0
    losses = F.cross_entropy(logits[:, :-1][keep].float(), ids[:, 1:][keep], reduction="none")
    return (losses * target_w[keep]).sum() / target_w[keep].sum().clamp(min=1e-9)


def learning_rate(step: int, total: int, *, lr: float, warmup_steps: int, min_lr_ratio: float) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay from ``lr`` to ``lr * min_lr_ratio`` at ``total``."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    frac = min(1.0, (step - warmup_steps) / max(1, total - warmup_steps))
    return lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


def run_steps(params: Iterable[torch.nn.Parameter], step_loss: Callable[[int], tuple[torch.Tensor, dict]], cfg, *,
              evaluate: Callable[[], dict] | None = None, log: Callable[[str], None] = print,
              modes: Callable[[bool], None] | None = None) -> LoopReport:
    """Run ``step_loss(step) -> (loss, parts)`` and optimise ``params`` until ``cfg.max_steps`` or
    ``cfg.minutes`` run out. ``cfg`` carries lr, warmup_steps, min_lr_ratio, weight_decay, max_grad_norm,
    max_steps, minutes and eval_every; ``modes(training)`` switches the trained module between train and
    eval."""
    params = list(params)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    report = LoopReport()
    budget = cfg.minutes * 60
    total = cfg.max_steps or 10**9
    start = time.time()
    step = 0
    while step < total:
        lr = learning_rate(step, total, lr=cfg.lr, warmup_steps=cfg.warmup_steps, min_lr_ratio=cfg.min_lr_ratio)
        for g in opt.param_groups:
            g["lr"] = lr
        if modes:
            modes(True)
        loss, parts = step_loss(step)
        loss.backward()
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        report.losses.append(float(loss.detach()))
        if not cfg.max_steps and step >= 10 and step % 10 == 0:
            per_step = (time.time() - start) / step
            total = max(step + 1, cfg.warmup_steps + 20, int(budget / per_step * 0.95))
        if step % 25 == 0:
            recent = report.losses[-25:]
            log(f"step {step}/{total} loss {sum(recent) / len(recent):.3f} "
                + " ".join(f"{k} {v:.3f}" for k, v in parts.items()) + f" lr {lr:.1e} {time.time() - start:.0f}s")
        if evaluate is not None and (step % cfg.eval_every == 0 or step == total):
            if modes:
                modes(False)
            scores = evaluate()
            report.evals.append({"step": step, **scores})
            log(f"eval at step {step}: " + ", ".join(f"{k} {v:.1f}" for k, v in scores.items()))
    report.steps = step
    report.seconds = time.time() - start
    if modes:
        modes(False)
    return report
