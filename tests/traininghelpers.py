"""A toy trainable module and its loss for the training-loop tests (imported by the tests and by the worker
processes of the data-parallel test, which cannot import a test module cheaply)."""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn.functional as F

from memkit.training import LoopConfig


class Toy(torch.nn.Module):
    """A small regression model (plus a buffer, which checkpoints carry too)."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.lin = torch.nn.Linear(8, 4)
        self.extra = torch.nn.Parameter(torch.zeros(4))
        self.register_buffer("seen", torch.zeros(()))


def toy_data(step: int, part: int, per_part: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Micro-batch ``part`` of step ``step``: made from ``(step, part)`` alone, as the loop asks of its callers."""
    g = torch.Generator().manual_seed(1000 * step + part)
    x = torch.randn(per_part, 8, generator=g)
    return x, x[:, :4] * 2.0 - x[:, 4:] + 0.5


def toy_loss(model: Toy, dropout: float = 0.2, global_rng: bool = False):
    """``step_loss`` of the toy; its dropout reads torch's generator, which the loop seeds per micro-batch. With
    ``global_rng``, the loss is also scaled by draws from Python's and NumPy's global generators (which only a
    checkpoint's saved generator states make the same after a resumption)."""
    def step_loss(step: int, part: int, parts: int):
        x, y = toy_data(step, part)
        h = F.dropout(x, dropout, training=dropout > 0)
        loss = F.mse_loss(model.lin(h) + model.extra, y)
        if global_rng:
            loss = loss * (1 + 0.1 * random.random() + 0.1 * float(np.random.rand()))
        with torch.no_grad():
            model.seen += 1
        return loss, {"mse": float(loss.detach())}
    return step_loss


def toy_cfg(**kw) -> LoopConfig:
    base = dict(lr=0.05, warmup_steps=2, max_steps=6, minutes=0, batch_size=8, checkpoint_every=2, eval_every=100)
    return LoopConfig(**{**base, **kw})
