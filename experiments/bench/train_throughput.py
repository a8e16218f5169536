"""Training throughput: the time of one training step of the adapter generator or the slot model against the
frozen LM's plain forward pass over the same batch.

For each of ``--steps`` optimizer steps (after ``--warmup`` untimed ones) the step is timed whole, through the
real training loop (``train_generator`` / ``train_slots``: the losses, the backward pass and AdamW), and then the
frozen LM reads the same step's text once in a plain forward pass (no gradients, no memory): every document and
every question-and-answer sequence of the step's items, in batches of the step's size. Reported: the median step
time, the median forward time, their ratio (the issue's target: a step at most 3.5x a forward pass), and tokens/s
of both (the tokens of the batch: its documents and question/answer sequences, each counted once).

    python -m experiments.bench.train_throughput --method adapter --steps 10 --json docs/bench/train_throughput_adapter.json
    python -m experiments.bench.train_throughput --method slots --model DIR --data squad:train.json

Options pass through to the training config (``--precision bf16``, ``--grad-checkpointing``, ``--batch-size``).
Owns: that measurement and its command line. Knows the training recipes' building blocks, not the CLI.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from experiments.world import adapter_data


def _forward_seconds(lm, texts: list[list[int]], batch_size: int) -> float:
    """Seconds of a plain forward pass over ``texts`` (token lists, with their leading ids), in batches."""
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            lm.logits(texts[i:i + batch_size])
    if lm.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _batch_texts(lm, items, fmt) -> list[list[int]]:
    """The token sequences of a batch read once: its distinct documents and each item's QA sequence."""
    from memkit.adapters.train import qa_sequence

    docs = sorted({d for it in items for d in it.documents})
    out = [lm.bos_ids + ids[:lm.max_context - len(lm.bos_ids)] for ids in (lm.encode(d) for d in docs)]
    out += [qa_sequence(lm, it.qas, fmt)[0] for it in items if it.qas]
    return out


def measure(lm, method: str, cfg, items: list, *, steps: int, warmup: int, log=print) -> dict:
    """Time ``steps`` training steps (after ``warmup``) of ``method`` on ``items`` and the plain forward pass over
    each step's batch."""
    from memkit.prompts import QAFormat

    fmt = QAFormat.of(getattr(cfg, "prompt_format", "plain"), lm.tokenizer)
    if method == "adapter":
        from memkit.recipes.adapter import build
        from memkit.adapters.train import train_generator

        model = build(lm, cfg, log=lambda _m: None)

        def train(batch_items, n):
            cfg.max_steps = n
            train_generator(lm, model, iter(batch_items), cfg, log=lambda _m: None)
    else:
        from memkit.recipes.slots import build
        from memkit.slots.train import train_slots

        model = build(lm, cfg, log=lambda _m: None)

        def train(batch_items, n):
            cfg.max_steps = n
            train_slots(lm, model, iter(batch_items), cfg, log=lambda _m: None)

    cfg.checkpoint_every, cfg.eval_every, cfg.minutes, cfg.warmup_steps = 0, 10**9, 0.0, 1
    batch = cfg.batch_size
    step_s, fwd_s, tokens = [], [], []
    for i in range(warmup + steps):
        chunk = items[i * batch:(i + 1) * batch]
        if len(chunk) < batch:
            raise SystemExit(f"the data gave {len(items)} items, fewer than {(warmup + steps) * batch} asked for")
        if lm.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        train(chunk, 1)
        if lm.device.type == "cuda":
            torch.cuda.synchronize()
        took = time.perf_counter() - start
        texts = _batch_texts(lm, chunk, fmt)
        fwd = _forward_seconds(lm, texts, batch)
        if i >= warmup:
            step_s.append(took)
            fwd_s.append(fwd)
            tokens.append(sum(len(t) for t in texts))
            log(f"step {i - warmup + 1}/{steps}: {took:.3f}s, forward {fwd:.3f}s, ratio {took / fwd:.2f}")
    med_step, med_fwd, med_tok = statistics.median(step_s), statistics.median(fwd_s), statistics.median(tokens)
    return {"method": method, "steps": steps, "batch_size": batch, "grad_accum": cfg.grad_accum,
            "precision": cfg.precision, "grad_checkpointing": cfg.grad_checkpointing,
            "median_step_s": round(med_step, 4), "median_forward_s": round(med_fwd, 4),
            "ratio": round(med_step / med_fwd, 2), "batch_tokens": med_tok,
            "train_tokens_per_s": round(med_tok / med_step, 1), "forward_tokens_per_s": round(med_tok / med_fwd, 1),
            "step_s": [round(s, 4) for s in step_s], "forward_s": [round(s, 4) for s in fwd_s]}


def main(argv: list[str] | None = None) -> None:
    from experiments.recipe_cli import add_config_options
    from memkit.recipes.data import load_data
    from memkit.adapters.train import AdapterTrainConfig
    from memkit.defaults import default_model
    from memkit.lm import FrozenLM
    from memkit.slots.train import SlotTrainConfig

    parser = argparse.ArgumentParser(prog="python -m experiments.bench.train_throughput",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--method", choices=("adapter", "slots"), required=True)
    parser.add_argument("--model", default=None, help="base model (default: the packaged world LM)")
    parser.add_argument("--data", action="append", default=None, help="data specs as memkit train --data (world)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    known, rest = parser.parse_known_args(argv)
    config_cls = AdapterTrainConfig if known.method == "adapter" else SlotTrainConfig
    sub = argparse.ArgumentParser(prog=parser.prog)
    add_config_options(sub, config_cls)
    cfg = config_cls(**vars(sub.parse_args(rest)))
    if known.threads:
        torch.set_num_threads(known.threads)
    lm = FrozenLM.load(known.model or default_model(), device=known.device, dtype=known.dtype)
    data = load_data(known.data or ["world"], seed=cfg.seed, world=adapter_data)
    items = list(itertools.islice(data.stream, (known.warmup + known.steps) * cfg.batch_size))
    result = measure(lm, known.method, cfg, items, steps=known.steps, warmup=known.warmup)
    result.update({"model": lm.name, "data": known.data or ["world"], "device": str(lm.device),
                   "dtype": str(lm.dtype).replace("torch.", ""), "threads": torch.get_num_threads(),
                   "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
                   "torch": torch.__version__})
    if lm.device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(lm.device)
    print(json.dumps(result, indent=2))
    if known.json:
        known.json.parent.mkdir(parents=True, exist_ok=True)
        known.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
