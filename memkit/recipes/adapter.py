"""The recipe that trains an adapter generator for any frozen LM on any data: build (or continue) it, calibrate
its mean state, probe it on held-out items, train, save.

Owns: wiring ``TrainingData`` (``memkit.recipes.data``: the item stream, the held-out items, the corpus)
into ``memkit.adapters.train.train_generator``: the self-supervised steps first read the corpus (or the items'
documents when there is none); the probe is the F1 of held-out questions answered with only their documents'
adapter, beside the same LM closed-book and with the documents in the prompt, all asked in the run's prompt
format (``--prompt-format``: plain, or the tokenizer's chat template), which the generator records; checkpoints
go to ``OUT/checkpoint``; the generator is written with its training config, the data summary and the log. Run
as ``memkit train adapter``. The world's packaged generator is installed by ``experiments.world.recipes``.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from memkit.recipes.common import mean_f1, probed_training, run_inputs
from memkit.recipes.data import TrainingData, item_stream
from memkit import checkpoint
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
from memkit.prompts import QAFormat

ARCHITECTURE = ("state_rank", "svd_rank", "alpha", "norm", "center", "mean_state", "base_rank", "key_source",
                "prompt_format")
"""The options a generator is built with; a run that goes on from a saved generator takes them from it."""


def probe(lm, gen: AdapterGenerator, items: list[ContextQA], chunk_tokens: int, *, baselines: bool = False) -> dict:
    """Mean F1 (0-100) of answering each item's question with the adapter of its documents, asked in the
    generator's prompt format."""
    fmt = QAFormat.of(gen.config.prompt_format, lm.tokenizer)
    questions = [it.qas[0][0] for it in items]
    golds = [it.qas[0][1] for it in items]
    with torch.no_grad():
        states = [AdapterState.total(encode_documents(lm, gen, it.documents, chunk_tokens=chunk_tokens))
                  for it in items]
        stacked = AdapterState.stack(states)
        preds = lm.generate([fmt.prompt(q) for q in questions], max_new_tokens=12, stop=fmt.stop,
                            delta=gen.delta(stacked), batch_size=16)
        # Answer loss with each item's own adapter against the next item's: the gap is what the adapter carries
        # about its own documents (F1 moves only once that gap is large).
        seqs = [qa_sequence(lm, it.qas[:1], fmt) for it in items]
        shifted = AdapterState({n: m.roll(1, dims=0) for n, m in stacked.mats.items()})
        own = answer_loss(lm, seqs, gen.delta(stacked))
        other = answer_loss(lm, seqs, gen.delta(shifted))
    out = {"adapter_f1": mean_f1(preds, golds),
           "own_loss": float(own), "other_loss": float(other)}
    if baselines:
        closed = lm.generate([fmt.prompt(q) for q in questions], max_new_tokens=12, stop=fmt.stop, batch_size=16)
        read = lm.generate([fmt.prompt(q, it.documents) for q, it in zip(questions, items)], max_new_tokens=12,
                           stop=fmt.stop, batch_size=16)
        out["closed_f1"] = mean_f1(closed, golds)
        out["prompt_f1"] = mean_f1(read, golds)
    return out


def build(lm, cfg: AdapterTrainConfig, log=print) -> AdapterGenerator:
    """A fresh generator for ``lm`` from ``cfg``, or the one in ``cfg.init_from`` (whose architecture options,
    its prompt format among them, then replace ``cfg``'s). The prompt format is checked against the tokenizer
    first (chat needs a chat template)."""
    if cfg.init_from:
        gen = AdapterGenerator.load(cfg.init_from, lm)
        if gen.config.prompt_format != cfg.prompt_format:
            log(f"the generator in {cfg.init_from} was trained with the {gen.config.prompt_format} prompt format; "
                f"going on in it")
        for name in ARCHITECTURE:
            setattr(cfg, name, getattr(gen.config, name))
        cfg.targets = next(k for k in ("attn_out", "mlp_out") if lm.target_modules(k) == gen.config.targets)
        QAFormat.of(cfg.prompt_format, lm.tokenizer)
        log(f"going on from the generator in {cfg.init_from}")
        return gen
    QAFormat.of(cfg.prompt_format, lm.tokenizer)
    return AdapterGenerator.for_lm(lm, lm.target_modules(cfg.targets), state_rank=cfg.state_rank,
                                   svd_rank=cfg.svd_rank, alpha=cfg.alpha, norm=cfg.norm, center=cfg.center,
                                   key_source=cfg.key_source, base_rank=cfg.base_rank, mean_state=cfg.mean_state,
                                   prompt_format=cfg.prompt_format, seed=cfg.seed)


def run(lm, cfg: AdapterTrainConfig, data: TrainingData, out: Path, log=print) -> dict:
    """Train a generator for ``lm`` on ``data`` and save it to ``out``; returns the summary."""
    start = time.time()
    gen = build(lm, cfg, log)
    n_params = sum(p.numel() for p in gen.parameters())
    log(f"generator: {n_params / 1e6:.2f}M parameters on {len(gen.config.targets)} modules of {lm.name}")
    if cfg.mean_state and not cfg.init_from:
        sample = data.calibration
        with torch.no_grad():
            gen.calibrate(encode_documents(lm, gen, sample, chunk_tokens=cfg.chunk_tokens))
        log(f"mean state calibrated on {len(sample)} training documents")
    held = data.heldout
    log(f"data: {', '.join(data.summary.get('data', []))}; {len(held)} held-out items "
        f"({data.summary.get('split', '')})")
    if data.corpus and cfg.pretrain_steps:
        log(f"corpus: {len(data.corpus)} texts, read in pieces of at most {8 * cfg.chunk_tokens} characters")
    items = item_stream(data, cfg.pretrain_steps, cfg.batch_size, cfg.seed, piece_chars=8 * cfg.chunk_tokens)
    cfg.inputs = run_inputs(lm, data.summary)
    return probed_training(gen, out, cfg, log, start=start, data=data.summary,
                           probe=lambda baselines: probe(lm, gen, held, cfg.chunk_tokens, baselines=baselines),
                           train=lambda evaluate: train_generator(lm, gen, items, cfg,
                                                                  evaluate=evaluate, log=log,
                                                                  checkpoint_dir=out / checkpoint.RUN_FOLDER))
