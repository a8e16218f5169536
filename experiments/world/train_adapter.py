"""The recipe that trains the adapter generator for a world LM: data from the world, a held-out probe, saving.

Owns: wiring ``experiments.world.adapter_data`` items into ``memkit.adapters.train.train_generator``, the probe
(F1 on held-out training-entity questions answered with only the gold document's adapter, beside the same LM
closed-book and with the document in the prompt), and writing the generator with its training config and log.
Run as ``memkit train adapter`` or ``python -m experiments.world.train_adapter``. Test entities are never used.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import torch

from experiments.world.adapter_data import heldout_items, training_items
from experiments.world.config_args import install_copy, mean_f1, probed_training, recipe_main
from memkit.adapters.encode import encode_documents
from memkit.adapters.generator import AdapterGenerator
from memkit.adapters.state import AdapterState
from memkit.adapters.train import (
    AdapterTrainConfig,
    ContextQA,
    answer_loss,
    qa_sequence,
    train_generator,
)
from memkit.prompts import STOP, qa_prompt

ARCHITECTURE = ("state_rank", "svd_rank", "alpha", "norm", "center", "mean_state", "base_rank", "key_source")
"""The options a generator is built with; a run that goes on from a saved generator takes them from it."""


def probe(lm, gen: AdapterGenerator, items: list[ContextQA], chunk_tokens: int, *, baselines: bool = False) -> dict:
    """Mean F1 (0-100) of answering each item's question with the adapter of its documents."""
    questions = [it.qas[0][0] for it in items]
    golds = [it.qas[0][1] for it in items]
    with torch.no_grad():
        states = [AdapterState.total(encode_documents(lm, gen, it.documents, chunk_tokens=chunk_tokens))
                  for it in items]
        stacked = AdapterState.stack(states)
        preds = lm.generate([qa_prompt(q) for q in questions], max_new_tokens=12, stop=STOP,
                            delta=gen.delta(stacked), batch_size=16)
        # Answer loss with each item's own adapter against the next item's: the gap is what the adapter carries
        # about its own documents (F1 moves only once that gap is large).
        seqs = [qa_sequence(lm, it.qas[:1]) for it in items]
        shifted = AdapterState({n: m.roll(1, dims=0) for n, m in stacked.mats.items()})
        own = answer_loss(lm, seqs, gen.delta(stacked))
        other = answer_loss(lm, seqs, gen.delta(shifted))
    out = {"adapter_f1": mean_f1(preds, golds),
           "own_loss": float(own), "other_loss": float(other)}
    if baselines:
        closed = lm.generate([qa_prompt(q) for q in questions], max_new_tokens=12, stop=STOP, batch_size=16)
        read = lm.generate([qa_prompt(q, it.documents) for q, it in zip(questions, items)], max_new_tokens=12,
                           stop=STOP, batch_size=16)
        out["closed_f1"] = mean_f1(closed, golds)
        out["prompt_f1"] = mean_f1(read, golds)
    return out


def run(lm, cfg: AdapterTrainConfig, out: Path, log=print) -> dict:
    """Train a fresh generator for ``lm`` and save it to ``out``; returns the summary."""
    start = time.time()
    if cfg.init_from:
        gen = AdapterGenerator.load(cfg.init_from, lm)
        for name in ARCHITECTURE:
            setattr(cfg, name, getattr(gen.config, name))
        cfg.targets = next(k for k in ("attn_out", "mlp_out") if lm.target_modules(k) == gen.config.targets)
        log(f"going on from the generator in {cfg.init_from}")
    else:
        gen = AdapterGenerator.for_lm(lm, lm.target_modules(cfg.targets), state_rank=cfg.state_rank,
                                      svd_rank=cfg.svd_rank, alpha=cfg.alpha, norm=cfg.norm, center=cfg.center,
                                      key_source=cfg.key_source, base_rank=cfg.base_rank,
                                      mean_state=cfg.mean_state, seed=cfg.seed)
    n_params = sum(p.numel() for p in gen.parameters())
    log(f"generator: {n_params / 1e6:.2f}M parameters on {len(gen.config.targets)} modules of {lm.name}")
    if cfg.mean_state and not cfg.init_from:
        sample = [d for it in itertools.islice(training_items(cfg.seed + 1000), 64) for d in it.documents]
        with torch.no_grad():
            gen.calibrate(encode_documents(lm, gen, sample, chunk_tokens=cfg.chunk_tokens))
        log(f"mean state calibrated on {len(sample)} training documents")
    held = heldout_items()
    return probed_training(gen, out, cfg, log, start=start,
                           probe=lambda baselines: probe(lm, gen, held, cfg.chunk_tokens, baselines=baselines),
                           train=lambda evaluate: train_generator(lm, gen, training_items(cfg.seed), cfg,
                                                                  evaluate=evaluate, log=log))


def install(out: Path) -> Path:
    """Copy a trained generator into the package, beside the packaged world LM."""
    from memkit.methods.adapter import PACKAGED_GENERATOR

    return install_copy(out, PACKAGED_GENERATOR)


def main(argv: list[str] | None = None) -> None:
    recipe_main(argv, prog="python -m experiments.world.train_adapter", description=__doc__.split("\n")[0],
                config_cls=AdapterTrainConfig, default_out="build/adapter-generator", run=run, install=install)


if __name__ == "__main__":
    main()
