"""The recipe that builds the world LM: memkit's embedded default base model, trained from scratch on the world.

Owns: the model config (a small Llama), the weighted loss over packed examples, the quick probe, what one
training step reads and its command line. What the model reads is in ``lm_data``, every choice in ``lm_recipe``.
The loop is memkit's one loop (``memkit.training.run_steps``: AdamW with decay on matrices only, the warm-up and
cosine schedule re-planned from the measured speed on a wall-clock budget, bf16 autocast, clipping, probes,
checkpoints and ``--resume``); here a step is one packed batch, a whole model is trained. The result is saved with
``save_pretrained`` beside ``recipe.json`` and ``training_log.json``, and loads like any hub model.

Knows nothing of storage or memory methods; evaluation here is a quick probe, the real numbers come from
``memkit bench world``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import itertools
import json
import random
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from memkit.datasets.metrics import exact_match, f1
from experiments.world.entities import WorldConfig, build_world
from experiments.world.examples import qa_examples
from experiments.world.lm_data import packed_batches, train_tokenizer
from experiments.world.lm_recipe import Recipe
from memkit.prompts import qa_prompt
from memkit import checkpoint
from memkit.errors import ConfigError
from memkit.loading import quiet_transformers
from memkit.training import ItemBatches, LoopConfig, run_steps

__all__ = ["Recipe", "build_model", "example_mask", "install_model", "load_stage", "probe", "train",
           "weighted_loss"]


def build_model(recipe: Recipe, tok) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=recipe.hidden, intermediate_size=recipe.intermediate,
        num_hidden_layers=recipe.layers, num_attention_heads=recipe.heads, num_key_value_heads=recipe.heads,
        max_position_embeddings=recipe.window, tie_word_embeddings=True, rope_theta=10000.0,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(recipe.seed)
    return LlamaForCausalLM(config)


def load_stage(recipe: Recipe) -> tuple[PreTrainedTokenizerFast, LlamaForCausalLM]:
    """A model and tokenizer saved by an earlier run, set to this recipe's window; refuses another shape."""
    tok = PreTrainedTokenizerFast.from_pretrained(recipe.init_from, model_max_length=recipe.window)
    model = LlamaForCausalLM.from_pretrained(recipe.init_from, dtype=torch.float32)
    c = model.config
    shape = (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size)
    if shape != (recipe.hidden, recipe.layers, recipe.heads, recipe.intermediate):
        raise ValueError(f"--init-from {recipe.init_from} has hidden/layers/heads/intermediate {shape}; "
                         "pass the same sizes")
    c.max_position_embeddings = recipe.window
    return tok, model


def example_mask(segments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Block-causal attention mask [B, 1, T, T] (True: may attend) and per-example positions [B, T].

    Packed examples must not see each other: a closed-book question packed after a reading example would
    otherwise see that example's documents, and the LM learns that values in its context are not the answer.
    Positions restart at 0 for every example, as they do when memkit serves one prompt.
    """
    t = segments.shape[1]
    same = segments[:, :, None] == segments[:, None, :]
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    starts = torch.ones_like(segments, dtype=torch.bool)
    starts[:, 1:] = segments[:, 1:] != segments[:, :-1]
    index = torch.arange(t).expand_as(segments)
    first = torch.where(starts, index, torch.zeros_like(index)).cummax(dim=1).values
    return (same & causal)[:, None], index - first


def weighted_loss(model: LlamaForCausalLM, ids: torch.Tensor, weights: torch.Tensor,
                  segments: torch.Tensor) -> torch.Tensor:
    """Next-token loss where each target token counts by its weight; logits only where the weight is > 0."""
    mask, positions = example_mask(segments[:, :-1])
    hidden = model.model(input_ids=ids[:, :-1], attention_mask=mask, position_ids=positions).last_hidden_state
    target_w = weights[:, 1:]
    keep = target_w > 0
    logits = model.lm_head(hidden[keep])
    losses = F.cross_entropy(logits.float(), ids[:, 1:][keep], reduction="none")
    answers = target_w[keep] >= 1.0
    answer_loss = losses[answers].mean().detach() if answers.any() else losses.new_zeros(())
    return (losses * target_w[keep]).sum() / target_w[keep].sum(), answer_loss


def probe(model, tok, recipe: Recipe) -> dict:
    """Quick EM/F1: reading on test entities (one gold document), closed book on test and pretrain entities."""
    from memkit.lm import FrozenLM

    lm = FrozenLM(copy.deepcopy(model).eval(), tok, name="probe")
    world = build_world(WorldConfig(seed=recipe.world_seed))
    out = {}
    sets = {
        "reading_test": (qa_examples(world, "test", ("reading",), types=("single",)), True),
        "reading_multi": (qa_examples(world, "test", ("reading",), types=("as_of", "two_hop", "current")), True),
        "closed_test": (qa_examples(world, "test", ("closed_book",), types=("single",)), False),
        "closed_pretrain": (qa_examples(world, "pretrain", ("closed_book",), types=("single",)), False),
    }
    for name, (examples, with_docs) in sets.items():
        examples = list(examples)
        chosen = random.Random(f"probe:{name}").sample(examples, min(recipe.eval_questions, len(examples)))
        prompts = [qa_prompt(e.question, e.passages if with_docs else None) for e in chosen]
        preds = lm.generate(prompts, max_new_tokens=12, stop=["\n"], batch_size=16)
        out[name] = {"em": 100 * sum(exact_match(p, [e.answer]) for p, e in zip(preds, chosen)) / len(chosen),
                     "f1": 100 * sum(f1(p, [e.answer]) for p, e in zip(preds, chosen)) / len(chosen)}
    return out


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def loop_config(recipe: Recipe, inputs: str) -> LoopConfig:
    """The shared loop's options for this recipe: one optimizer step is one packed batch of ``batch_size`` rows
    of ``window`` tokens; ``inputs`` (the tokenizer and the data choices) must match on ``--resume``."""
    return LoopConfig(lr=recipe.lr, warmup_steps=recipe.warmup_steps, min_lr_ratio=recipe.min_lr_ratio,
                      weight_decay=recipe.weight_decay, max_grad_norm=1.0, max_steps=recipe.max_steps,
                      minutes=recipe.minutes, seed=recipe.seed, eval_every=recipe.eval_every,
                      batch_size=recipe.batch_size, precision="bf16" if recipe.bf16 else "fp32",
                      checkpoint_every=recipe.checkpoint_every, inputs=inputs, resume=recipe.resume)


def _inputs(recipe: Recipe, tok) -> str:
    """What a resumed run must read the same: every data choice of the recipe and the tokenizer's vocabulary."""
    loop_only = {"minutes", "max_steps", "eval_every", "eval_questions", "checkpoint_every", "resume", "threads",
                 "device"}
    choices = {k: v for k, v in asdict(recipe).items() if k not in loop_only}
    digest = hashlib.sha256(json.dumps([choices, tok.backend_tokenizer.to_str()], sort_keys=True).encode())
    return "world-lm:" + digest.hexdigest()[:16]


def train(recipe: Recipe, out_dir: Path, log=print) -> dict:
    """Train (or, with ``recipe.resume``, go on training) the world LM through ``memkit.training.run_steps`` and
    save it into ``out_dir`` with ``recipe.json`` and ``training_log.json``; checkpoints go to
    ``out_dir/checkpoint``. Step ``s`` reads the packed batch at position ``s`` of one stream seeded by the
    recipe, built with the curriculum at ``s / total``, so a run on ``max_steps`` resumes bit-identical.
    transformers stays quiet (no progress bars, no warnings about the probe's long prompts)."""
    recipe.validate()
    with quiet_transformers():
        return _train(recipe, out_dir, log)


def _train(recipe: Recipe, out_dir: Path, log) -> dict:
    torch.set_num_threads(recipe.threads)
    device = resolve_device(recipe.device)
    start = time.time()
    if recipe.init_from:
        tok, model = load_stage(recipe)
        log(f"continuing from {recipe.init_from}")
    else:
        tok = train_tokenizer(recipe)
        log(f"tokenizer: {len(tok)} tokens ({time.time() - start:.0f}s)")
        model = build_model(recipe, tok)
    model.to(device)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params / 1e6:.2f}M parameters on {device}")
    cfg = loop_config(recipe, _inputs(recipe, tok))
    plan = {"total": cfg.max_steps or 10**9}
    progress = {"frac": 0.0}
    raw = packed_batches(recipe, tok, random.Random(recipe.seed), progress)

    def positioned():                    # the curriculum of the batch at stream position k is that of step k
        for k in itertools.count():
            progress["frac"] = k / plan["total"]
            yield next(raw)

    stream = ItemBatches(positioned(), 1)

    def step_loss(step: int, part: int, parts: int):
        ids, weights, segments = stream.items(step, step + 1)[0]
        rows = ids.shape[0]
        if rows % parts:
            raise ConfigError(f"a step's {rows} rows do not split into {parts} micro-batches")
        take = slice(part * rows // parts, (part + 1) * rows // parts)
        loss, answer_loss = weighted_loss(model, ids[take].to(device), weights[take].to(device),
                                          segments[take].to(device))
        return loss, {"answer loss": float(answer_loss)}

    def on_step(step: int, total: int) -> None:
        plan["total"] = total

    def evaluate() -> dict:
        scores = probe(model, tok, recipe)
        return {f"{name} F1": s["f1"] for name, s in scores.items()}

    report = run_steps(model, step_loss, cfg, evaluate=evaluate, log=log, on_step=on_step,
                       checkpoint_dir=out_dir / checkpoint.RUN_FOLDER)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.to("cpu").save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    summary = {"steps": report.steps, "seconds": round(time.time() - start, 1), "parameters": n_params,
               "tokens_seen": report.steps * recipe.batch_size * recipe.window,
               "final_probe": report.evals[-1] if report.evals else None}
    if report.resumed_at is not None:
        summary["resumed_at"] = report.resumed_at
    (out_dir / "recipe.json").write_text(json.dumps(asdict(recipe), indent=2) + "\n")
    (out_dir / "training_log.json").write_text(json.dumps({"summary": summary, **report.to_dict()}, indent=2)
                                               + "\n")
    log(f"saved to {out_dir} ({summary['seconds']:.0f}s in all)")
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.world.build_lm", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("build/world-lm"))
    parser.add_argument("--install", action="store_true", help="copy the result into memkit/models/world-lm")
    for name, value in asdict(Recipe()).items():
        kind = (lambda v: v.lower() in ("1", "true", "yes", "on")) if isinstance(value, bool) else type(value)
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=value)
    args = vars(parser.parse_args(argv))
    out, install = args.pop("out"), args.pop("install")
    recipe = Recipe(**args)
    train(recipe, out, log=lambda msg: print(msg, flush=True))
    if install:
        print(f"installed as the default model: {install_model(out)}")


def install_model(out: Path) -> Path:
    """Copy a built world LM into the package as memkit's default model."""
    from memkit.packaged import WORLD_LM as PACKAGED_MODEL

    if PACKAGED_MODEL.exists():
        shutil.rmtree(PACKAGED_MODEL)
    shutil.copytree(out, PACKAGED_MODEL)
    return PACKAGED_MODEL


if __name__ == "__main__":
    main()
