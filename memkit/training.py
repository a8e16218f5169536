"""The training loop the trainable parts of memkit share (the adapter generator, the slot model).

Owns: ``learning_rate`` (linear warm-up then cosine decay to ``min_lr_ratio``), ``next_token_loss`` (weighted
next-token loss of token sequences read with a delta or after a prefix), ``distillation_loss`` (that reading pulled
toward the LM reading the documents in its prompt), ``fitting_teachers``, ``ItemBatches`` and ``part_rng`` (each
micro-batch's items and randomness as a function of its step and part alone) and ``run_steps``: AdamW over one
module's trainable parameters only (the frozen LM's weights are never handed to the optimizer), gradient
accumulation over micro-batches, data parallelism over processes (gradients averaged by ``memkit.distributed``),
bf16 autocast, gradient checkpointing through the frozen LM, gradient clipping, a step plan that fits a wall-clock
budget (re-estimated every 10 steps from the time per step), a log line every 25 steps, an evaluation every
``eval_every`` steps and at the end, and checkpoints every ``checkpoint_every`` steps and at the end
(``memkit.checkpoint``) from which ``resume`` goes on.

Determinism: a step's micro-batch ``part`` of ``parts`` is computed by ``step_loss(step, part, parts)``, before
which torch's generator is seeded from ``(seed, step, part)``; callers derive the data and any other randomness
from ``(step, part, parts)`` too. So nothing about the data needs checkpointing, ``W`` processes with
``grad_accum`` A train as one process with ``grad_accum`` W x A (up to the order floats are summed in), and a run
with ``max_steps`` that is stopped and resumed ends bit-identical to one that never stopped (on CPU). A run on a
time budget (``minutes``) re-plans its total from the measured speed, which moves the learning-rate schedule: it
resumes with the budget left, but is not bit-reproducible.

Knows nothing of what a step computes, of models beyond the frozen LM's ``recomputing()``, storage or the CLI.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F

from memkit import checkpoint, distributed
from memkit.errors import ConfigError, MemkitError
from memkit.train_config import LoopConfig


@dataclass
class LoopReport:
    steps: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    """The loss of every optimizer step (the mean over its micro-batches and processes)."""
    evals: list[dict] = field(default_factory=list)
    resumed_at: int | None = None
    """The step a resumed run went on from (None: it started afresh)."""
    resumed_seconds: float = 0.0
    """The seconds the run had spent before the checkpoint it went on from (0: it started afresh)."""

    def to_dict(self) -> dict:
        out = {"steps": self.steps, "seconds": round(self.seconds, 1), "loss_every_10": self.losses[::10],
               "evals": self.evals}
        if self.resumed_at is not None:
            out["resumed_at"] = self.resumed_at
        return out


def _predicted(seqs: list[list[int]], weights: list[list[float]]) -> tuple[torch.Tensor, list[int], list[float]]:
    """Where a token of positive weight is predicted: a bool mask ``[B, T]`` over the positions that predict
    it (``T`` the longest sequence), and those tokens and weights in row-major order."""
    width = max(len(s) for s in seqs)
    keep = torch.zeros(len(seqs), width, dtype=torch.bool)
    targets, target_w = [], []
    for i, (s, ws) in enumerate(zip(seqs, weights)):
        for t in range(1, len(s)):
            if t < len(ws) and ws[t] > 0:
                keep[i, t - 1] = True
                targets.append(int(s[t]))
                target_w.append(float(ws[t]))
    return keep, targets, target_w


def next_token_loss(lm, seqs: list[list[int]], weights: list[list[float]], *, delta=None,
                    prefix=None) -> torch.Tensor:
    """Mean of per-token next-token losses weighted by ``weights`` (one per token of each sequence), the LM
    reading with ``delta`` applied or after its row of ``prefix``. Logits are computed only where a token of
    positive weight is predicted."""
    keep, targets, target_w = _predicted(seqs, weights)
    if not targets:                     # nothing to predict: a zero that still reaches the graph
        keep[0, 0] = True
        targets, target_w = [0], [0.0]
    logits, _ = lm.logits(seqs, delta=delta, prefix=prefix, keep=keep)
    ids = torch.tensor(targets, device=logits.device)
    w = torch.tensor(target_w, device=logits.device)
    losses = F.cross_entropy(logits.float(), ids, reduction="none")
    return (losses * w).sum() / w.sum().clamp(min=1e-9)


def fitting_teachers(lm, students: list[tuple[list[int], list[float]]],
                     teachers: list[tuple[list[int], list[float]]]) -> list[tuple[list[int], list[float]]]:
    """``teachers`` for ``distillation_loss``, each row whose teacher is longer than the LM's context left out
    of it: that row's teacher becomes its student with no weight, and the student (changed in place) weighs
    nothing either."""
    out = []
    for k, (ids, weights) in enumerate(teachers):
        if len(ids) > lm.max_context:
            students[k] = (students[k][0], [0.0] * len(students[k][0]))
            out.append(students[k])
        else:
            out.append((ids, weights))
    return out


def distillation_loss(lm, seqs: list[list[int]], weights: list[list[float]], teacher_seqs: list[list[int]],
                      teacher_weights: list[list[float]], *, delta=None, prefix=None) -> torch.Tensor:
    """Distillation from reading: the weighted mean over predicted tokens of KL(teacher || student), where the
    student is the LM reading ``seqs`` with ``delta`` or after ``prefix`` (as ``next_token_loss``) and the
    teacher the same LM reading ``teacher_seqs`` as they are (e.g. the gold documents in the prompt), without
    gradient. Row ``i`` of both must predict the same tokens (the answer) at positive weight, in order; the
    student's weights weigh them."""
    keep, targets, target_w = _predicted(seqs, weights)
    t_keep, t_targets, _ = _predicted(teacher_seqs, teacher_weights)
    if t_targets != targets:
        raise ValueError("the teacher's sequences predict other tokens than the student's")
    if not targets:
        return next_token_loss(lm, seqs, weights, delta=delta, prefix=prefix)   # a zero in the graph
    with torch.no_grad():
        teacher, _ = lm.logits(teacher_seqs, keep=t_keep)
        teacher = torch.log_softmax(teacher.float(), dim=-1)
    student, _ = lm.logits(seqs, delta=delta, prefix=prefix, keep=keep)
    student = torch.log_softmax(student.float(), dim=-1)
    kl = (teacher.exp() * (teacher - student)).sum(-1)
    w = torch.tensor(target_w, device=kl.device)
    return (kl * w).sum() / w.sum().clamp(min=1e-9)


def learning_rate(step: int, total: int, *, lr: float, warmup_steps: int, min_lr_ratio: float) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay from ``lr`` to ``lr * min_lr_ratio`` at ``total``."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    frac = min(1.0, (step - warmup_steps) / max(1, total - warmup_steps))
    return lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


# ------------------------------------------------------------------------------------------ data by position

def _seed_of(*key) -> int:
    digest = hashlib.sha256("/".join(str(k) for k in key).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def part_rng(seed: int, step: int, part: int) -> random.Random:
    """The random generator of micro-batch ``part`` of optimizer step ``step``: the same wherever and whenever
    that micro-batch is computed (another process, a resumed run)."""
    return random.Random(_seed_of("memkit-part", seed, step, part))


class ItemBatches:
    """The training items of each optimizer step, drawn from one deterministic stream of items: step ``s`` gets
    the items at positions ``[s*B, (s+1)*B)`` and its micro-batch ``p`` of ``P`` the ``p``-th ``B/P`` of them.

    Items are drawn from the stream as they are first asked for and dropped once a later position is asked for,
    so parts must be asked for in order (as the loop does); asking for a later step first (a resumed run, or a
    process whose parts come later) draws and drops the items before it. Every process and every resumption
    must therefore get the same stream, item for item (e.g. built from the run's seed).
    """

    def __init__(self, items: Iterable, batch_size: int):
        if batch_size < 1:
            raise ConfigError("--batch-size must be at least 1")
        self.batch_size = batch_size
        self._items: Iterator = iter(items)
        self._start = 0                  # stream position of _held[0]
        self._held: list = []

    def _draw(self, count: int) -> list:
        got = list(itertools.islice(self._items, count))
        if len(got) < count:
            raise MemkitError(f"the training items ran out after {self._start + len(self._held) + len(got)}; give "
                              f"an endless stream or fewer --max-steps")
        return got

    def items(self, start: int, stop: int) -> list:
        """The items at stream positions ``[start, stop)``, none of them before one asked for earlier."""
        if start < self._start:
            raise ValueError(f"items from position {start} were asked for after position {self._start}")
        end = self._start + len(self._held)
        if start >= end:
            self._draw(start - end)      # skipped: drawn and dropped
            self._held, self._start = [], start
        else:
            del self._held[: start - self._start]
            self._start = start
        missing = stop - (self._start + len(self._held))
        if missing > 0:
            self._held += self._draw(missing)
        return self._held[: stop - start]

    def part(self, step: int, part: int, parts: int) -> list:
        """Micro-batch ``part`` of ``parts`` of optimizer step ``step``."""
        if parts < 1 or self.batch_size % parts:
            raise ConfigError(f"--batch-size {self.batch_size} does not split into {parts} micro-batches "
                              f"(processes x --grad-accum); make it a multiple of {parts}")
        size = self.batch_size // parts
        first = step * self.batch_size + part * size
        return self.items(first, first + size)


# ------------------------------------------------------------------------------------------ the loop

def _autocast(precision: str, device: torch.device) -> Callable[[], object]:
    """A factory of the context the loss is computed in."""
    if precision == "fp32":
        return nullcontext
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--precision bf16 is not supported on {device.type}; use --precision fp32")
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("--precision bf16 needs a GPU with bfloat16 support, which this one lacks; use "
                          "--precision fp32")
    return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _config_dict(cfg) -> dict:
    try:
        return asdict(cfg)
    except TypeError:
        return {k: v for k, v in vars(cfg).items() if not k.startswith("_")}


def _decay_groups(params: list[torch.Tensor], weight_decay: float) -> list[dict]:
    """AdamW's parameter groups: with weight decay, matrices decay and vectors (norm scales, biases) do not;
    without it, one group (the layout of checkpoints written before decay groups existed)."""
    if weight_decay <= 0:
        return [{"params": params, "weight_decay": 0.0}]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def run_steps(params_module: torch.nn.Module, step_loss: Callable[[int, int, int], tuple[torch.Tensor, dict]],
              cfg: LoopConfig, *, evaluate: Callable[[], dict] | None = None, log: Callable[[str], None] = print,
              modes: Callable[[bool], None] | None = None, checkpoint_dir=None, lm=None,
              on_step: Callable[[int, int], None] | None = None) -> LoopReport:
    """Optimise ``params_module``'s trainable parameters until ``cfg.max_steps`` or ``cfg.minutes`` run out.

    Each optimizer step ``step`` is ``parts = processes x cfg.grad_accum`` micro-batches; this process computes
    ``step_loss(step, part, parts) -> (loss, parts_dict)`` for ``part = rank * grad_accum + j``, ``j`` in
    ``range(grad_accum)``, and back-propagates ``loss / grad_accum``; gradients are then averaged over the
    processes, clipped, and AdamW steps. ``modes(training)`` switches the trained module between train and eval
    (default: ``params_module.train``). ``lm``: the frozen LM, needed for ``cfg.grad_checkpointing``. With
    ``checkpoint_dir``, a checkpoint is written every ``cfg.checkpoint_every`` steps and at the end;
    ``cfg.resume`` goes on from one. Only rank 0 logs, evaluates (``evaluate() -> scores``) and writes.
    ``on_step(step, total)`` is called before each step with the planned total (a curriculum that follows the
    fraction of training done reads it there)."""
    cfg.validate()
    group = distributed.current()
    accum = cfg.grad_accum
    parts = group.world * accum
    if cfg.batch_size % parts:
        raise ConfigError(f"--batch-size {cfg.batch_size} does not split into {parts} micro-batches ({group.world} "
                          f"processes x --grad-accum {accum}); make it a multiple of {parts}")
    named = [(n, p) for n, p in params_module.named_parameters() if p.requires_grad]
    names, params = [n for n, _ in named], [p for _, p in named]
    device = params[0].device if params else torch.device("cpu")
    autocast = _autocast(cfg.precision, device)
    if cfg.grad_checkpointing and lm is None:
        raise ConfigError("--grad-checkpointing recomputes the frozen LM, and this training reads none; leave it out")
    recompute = lm.recomputing if cfg.grad_checkpointing else nullcontext
    modes = modes or params_module.train
    say = log if group.main else (lambda _line: None)
    opt = torch.optim.AdamW(_decay_groups(params, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.95))
    config = _config_dict(cfg)
    report = LoopReport()
    total = cfg.max_steps or 10**9
    step, elapsed = 0, 0.0
    if cfg.resume:
        saved = checkpoint.load(cfg.resume, module=params_module, optimizer=opt, names=names, config=config,
                                world=group.world, grad_accum=accum)
        step, elapsed = saved.step, saved.seconds
        total = cfg.max_steps or max(saved.total, step + 1)
        report.losses, report.evals, report.resumed_at = saved.losses, saved.evals, step
        report.resumed_seconds = elapsed
        say(f"resumed from {saved.path} at step {step} ({elapsed:.0f}s spent)")
    elif checkpoint_dir is not None and group.main and checkpoint.latest_step(checkpoint_dir) is not None:
        say(f"{checkpoint_dir} holds an earlier run's checkpoint; this run's first checkpoint replaces it")
    saving = checkpoint_dir is not None and cfg.checkpoint_every > 0 and group.main

    def save() -> None:
        checkpoint.save(checkpoint_dir, module=params_module, optimizer=opt, names=names, step=step, total=total,
                        seconds=time.time() - start, losses=report.losses, evals=report.evals, config=config,
                        world=group.world, grad_accum=accum)

    budget = cfg.minutes * 60
    start = time.time() - elapsed
    window_parts: dict[str, list] = {}  # each loss part's sum and count since the last log line
    while step < total:
        lr = learning_rate(step, total, lr=cfg.lr, warmup_steps=cfg.warmup_steps, min_lr_ratio=cfg.min_lr_ratio)
        for g in opt.param_groups:
            g["lr"] = lr
        if on_step is not None:
            on_step(step, total)
        modes(True)
        loss_sum, shown = 0.0, {}
        for j in range(accum):
            part = group.rank * accum + j
            torch.manual_seed(_seed_of("memkit-torch", cfg.seed, step, part))
            with autocast(), recompute():
                loss, info = step_loss(step, part, parts)
            (loss / accum).backward()
            loss_sum += float(loss.detach())
            for k, v in info.items():
                shown[k] = shown.get(k, 0.0) + v / accum
        distributed.average_gradients(params, group)
        loss_sum = distributed.sum_values([loss_sum], group, device)[0]
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        report.losses.append(loss_sum / parts)
        for k, v in shown.items():
            sums, counts = window_parts.setdefault(k, [0.0, 0])
            window_parts[k] = [sums + v, counts + 1]
        if not cfg.max_steps and step >= 10 and step % 10 == 0:
            per_step = (time.time() - start) / step
            planned = max(step + 1, cfg.warmup_steps + 20, int(budget / per_step * 0.95))
            total = distributed.from_main(planned, group, device)
        if step % 25 == 0:
            recent = report.losses[-25:]
            say(f"step {step}/{total} loss {sum(recent) / len(recent):.3f} "
                + " ".join(f"{k} {total_v / n:.3f}" for k, (total_v, n) in window_parts.items())
                + f" lr {lr:.1e} {time.time() - start:.0f}s")
            window_parts = {}
        if evaluate is not None and group.main and (step % cfg.eval_every == 0 or step == total):
            modes(False)
            scores = evaluate()
            report.evals.append({"step": step, **scores})
            say(f"eval at step {step}: " + ", ".join(f"{k} {v:.1f}" for k, v in scores.items()))
        if saving and (step % cfg.checkpoint_every == 0 or step == total):
            save()
    if saving and checkpoint.latest_step(checkpoint_dir) != step:
        save()                          # a resumed run with nothing left to do: its checkpoint, once
    report.steps = step
    report.seconds = time.time() - start
    modes(False)
    return report
