"""The recipe that builds the world LM: memkit's embedded default base model, trained from scratch on the world.

Owns: the model config (a small Llama), the weighted loss over packed examples, the quick probe, the training
loop and its command line. What the model reads is in ``lm_data``, every choice in ``lm_recipe``. Training runs
for a wall-clock budget with the schedule of ``memkit.training`` (``learning_rate``: warm-up, cosine decay)
re-planned from the measured speed. The loop is its own, not ``memkit.training.run_steps``: that one trains what
reads through a frozen LM (checkpoints, accumulation, processes), this one a whole model from scratch with packed
batches and decay groups, and its packaged result must stay reproducible. The result is saved with
``save_pretrained`` beside ``recipe.json`` and ``training_log.json``, and loads like any hub model.

Knows nothing of storage or memory methods; evaluation here is a quick probe, the real numbers come from
``memkit bench world``.
"""

from __future__ import annotations

import argparse
import copy
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
from memkit.training import learning_rate

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


def train(recipe: Recipe, out_dir: Path, log=print) -> dict:
    recipe.validate()
    torch.set_num_threads(recipe.threads)
    device = resolve_device(recipe.device)
    rng = random.Random(recipe.seed)
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
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr, betas=(0.9, 0.95))
    progress = {"frac": 0.0}
    batches = packed_batches(recipe, tok, rng, progress)
    history, answer_history, evals = [], [], []
    budget = recipe.minutes * 60
    total = recipe.max_steps or 10**9
    t0 = time.time()
    step = 0
    while step < total:
        lr = learning_rate(step, total, lr=recipe.lr, warmup_steps=recipe.warmup_steps,
                           min_lr_ratio=recipe.min_lr_ratio)
        for group in opt.param_groups:
            group["lr"] = lr
        progress["frac"] = step / total
        ids, weights, segments = (t.to(device) for t in next(batches))
        model.train()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=recipe.bf16):
            loss, answer_loss = weighted_loss(model, ids, weights, segments)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        history.append(loss.item())
        answer_history.append(answer_loss.item())
        if step >= 20 and step % 10 == 0 and not recipe.max_steps:
            # re-plan from the speed so far, so the run ends on its wall-clock budget whatever the load
            per_step = (time.time() - t0) / step
            total = max(step + 1, recipe.warmup_steps + 50, int(budget / per_step * 0.95))
            if step == 20:
                log(f"{per_step:.2f}s/step, {ids.numel() / per_step:.0f} tokens/s: planning {total} steps")
        if step % 50 == 0:
            log(f"step {step}/{total} loss {sum(history[-50:]) / 50:.3f} "
                f"answer loss {sum(answer_history[-50:]) / 50:.3f} lr {lr:.2e} {time.time() - t0:.0f}s")
        if step % recipe.eval_every == 0 or step == total:
            scores = probe(model, tok, recipe)
            evals.append({"step": step, **scores})
            log(f"probe at step {step}: " + ", ".join(f"{k} F1 {v['f1']:.1f}" for k, v in scores.items()))
    out_dir.mkdir(parents=True, exist_ok=True)
    model.to("cpu").save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    summary = {"steps": step, "seconds": round(time.time() - start, 1), "parameters": n_params,
               "tokens_seen": step * recipe.batch_size * recipe.window, "final_probe": evals[-1] if evals else None}
    (out_dir / "recipe.json").write_text(json.dumps(asdict(recipe), indent=2) + "\n")
    (out_dir / "training_log.json").write_text(json.dumps(
        {"summary": summary, "probes": evals, "loss_every_10": history[::10],
         "answer_loss_every_10": answer_history[::10]}, indent=2) + "\n")
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
