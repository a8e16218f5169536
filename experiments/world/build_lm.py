"""The recipe that builds the world LM: memkit's embedded default base model, trained from scratch on the world.

Owns: the tokenizer (byte-level BPE trained on world text of the pretrain and train splits), the model config
(a small Llama), the training mixture and the loop. The mixture has three streams:
  - reading: a question answered from documents in the prompt (biography, updates, employer, plus distractors),
    on train-split entities of freshly seeded worlds, so reading is learnt on ever-new facts; the loss falls on
    the answer tokens (and, lightly, on the documents);
  - closed book: questions about the pretrain entities with no documents (their facts go into the weights);
  - documents: the pretrain entities' documents as plain text.
Test entities never appear in any stream (their names are disjoint by construction, and the tokenizer never sees
their documents). Training runs for a wall-clock budget with a cosine schedule; the result is saved with
``save_pretrained`` beside ``recipe.json`` and ``training_log.json``, and loads like any hub model.

Knows nothing of storage or memory methods; evaluation here is a quick probe, the real numbers come from
``memkit bench world``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from experiments.bench.metrics import exact_match, f1
from experiments.world.entities import WorldConfig, build_world
from experiments.world.examples import qa_examples
from experiments.world.render import documents
from memkit.prompts import qa_prompt

SPECIAL = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}


@dataclass
class Recipe:
    """Every choice of the world LM's build; saved as recipe.json beside the model."""

    seed: int = 0                 # seeds the model init, data order and the rc worlds (--seed)
    world_seed: int = 0           # the benchmark world whose pretrain entities the LM memorises
    vocab_size: int = 2048
    hidden: int = 192
    layers: int = 4
    heads: int = 6
    intermediate: int = 512
    window: int = 512             # context length trained and served (max_position_embeddings)
    batch_size: int = 8           # sequences of `window` tokens per step
    lr: float = 2e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 150
    weight_decay: float = 0.05
    minutes: float = 50.0         # wall-clock training budget (--minutes)
    max_steps: int = 0            # 0: as many as the budget allows
    mix_reading: float = 0.55     # share of examples drawn from each stream
    mix_closed_book: float = 0.35
    mix_documents: float = 0.1
    snippet_until: float = 0.5    # curriculum: reading examples start as short snippets of the documents,
    snippet_floor: float = 0.2    # falling linearly to this share at this fraction of training
    snippet_keep: float = 0.35    # chance that a sentence with no answer in it stays in a snippet
    passage_weight: float = 0.1   # loss weight on document tokens inside reading examples
    max_distractors: int = 2
    questions_per_context: int = 6  # a reading example answers up to this many questions about its documents
    threads: int = 2
    eval_every: int = 250
    eval_questions: int = 60
    init_from: str = ""           # continue from a model this recipe saved (its tokenizer and weights); the
                                  # window may grow (RoPE positions), the rest of the shape must match

    def validate(self) -> None:
        if self.hidden % self.heads:
            raise ValueError("hidden must be a multiple of heads (--hidden/--heads)")
        if abs(self.mix_reading + self.mix_closed_book + self.mix_documents - 1) > 1e-6:
            raise ValueError("the three mix shares must add up to 1")
        if self.minutes <= 0 and self.max_steps <= 0:
            raise ValueError("give a budget: --minutes or --max-steps")


# ---- tokenizer -------------------------------------------------------------------------------------------
def train_tokenizer(recipe: Recipe) -> PreTrainedTokenizerFast:
    """Byte-level BPE on the pretrain and train splits of a few worlds (never a test document)."""
    corpus = []
    for seed in (recipe.world_seed, recipe.world_seed + 1001):
        world = build_world(WorldConfig(seed=seed, n_test=0))
        for split in ("pretrain", "train"):
            corpus += [d.text for d in documents(world, split)]
            corpus += [qa_prompt(e.question) + " " + e.answer
                       for e in qa_examples(world, split, ("closed_book",), phrasings=3)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=recipe.vocab_size, special_tokens=list(SPECIAL.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=recipe.window, **SPECIAL)


# ---- data ------------------------------------------------------------------------------------------------
Example = tuple[list[int], list[float]]


def _qa_tokens(tok, passages: list[str], qas: list[tuple[str, str]], passage_weight: float) -> Example:
    """Passages, then one or more question/answer turns in memkit's prompt format.

    Loss weights: each answer (and its closing newline) 1, passages ``passage_weight``, questions 0. The pieces
    are cut at newlines, where byte-level BPE never merges across, so the ids equal the whole text's ids.
    """
    body = qa_prompt("x", passages)[: -len(qa_prompt("x"))]
    ids = tok.encode(body, add_special_tokens=False) if body else []
    weights = [passage_weight] * len(ids)
    for i, (question, answer) in enumerate(qas):
        head = tok.encode(("\n" if i else "") + qa_prompt(question), add_special_tokens=False)
        tail = tok.encode(" " + answer + "\n", add_special_tokens=False)
        ids += head + tail
        weights += [0.0] * len(head) + [1.0] * len(tail)
    return ids, weights


def snippet(text: str, answers: list[str], keep: float, rng: random.Random) -> str:
    """The first sentence, every sentence holding an answer, and each other sentence with chance ``keep``."""
    sentences = [s for s in text.replace("\n", " ").split(". ") if s.strip()]
    kept = [s for i, s in enumerate(sentences)
            if i == 0 or any(a in s for a in answers) or rng.random() < keep]
    return ". ".join(kept).rstrip(".") + "."


def reading_stream(recipe: Recipe, tok, rng: random.Random, progress: dict) -> Iterator[Example]:
    """Reading-comprehension examples on train-split entities of ever new worlds.

    Each example reads the gold documents of one entity (plus distractor documents) and then answers several
    different questions about them, one after another: many answers per token of compute. Early in training
    most examples read short snippets of the documents; their share falls as ``progress["frac"]`` grows.
    """
    seed = 10_000 + recipe.seed * 1000
    while True:
        seed += 1
        world = build_world(WorldConfig(seed=seed, n_pretrain=0, n_test=0))
        groups: dict[tuple[str, ...], dict[str, str]] = {}
        for ex in qa_examples(world, "train", ("reading",), phrasings=3, seed=seed):
            by_answer = groups.setdefault(tuple(ex.passages), {})
            if ex.answer not in by_answer or rng.random() < 0.5:
                by_answer[ex.answer] = ex.question   # one phrasing per distinct answer, chosen at random
        keys = list(groups)
        rng.shuffle(keys)
        for key in keys:
            qas = [(q, a) for a, q in groups[key].items()]
            rng.shuffle(qas)
            qas = qas[: rng.randint(1, recipe.questions_per_context)]
            passages = list(key)
            for _ in range(rng.randint(0, recipe.max_distractors)):
                other = keys[rng.randrange(len(keys))][0]
                if other not in key:
                    passages.insert(rng.randint(0, len(passages)), other)
            share = max(recipe.snippet_floor, 1 - progress["frac"] / recipe.snippet_until)
            if rng.random() < share:
                passages = [snippet(p, [a for _, a in qas], recipe.snippet_keep, rng) for p in passages]
            yield _qa_tokens(tok, passages, qas, recipe.passage_weight)


def closed_book_stream(recipe: Recipe, tok, rng: random.Random) -> Iterator[Example]:
    world = build_world(WorldConfig(seed=recipe.world_seed))
    examples = list(qa_examples(world, "pretrain", ("closed_book",), types=("single", "current"), phrasings=3))
    while True:
        rng.shuffle(examples)
        for ex in examples:
            yield _qa_tokens(tok, [], [(ex.question, ex.answer)], 0.0)


def document_stream(recipe: Recipe, tok, rng: random.Random) -> Iterator[Example]:
    world = build_world(WorldConfig(seed=recipe.world_seed))
    texts = [d.text for d in documents(world, "pretrain")]
    while True:
        rng.shuffle(texts)
        for text in texts:
            ids = tok.encode(text + "\n\n", add_special_tokens=False)
            yield ids, [1.0] * len(ids)


def packed_batches(recipe: Recipe, tok, rng: random.Random,
                   progress: dict) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Batches of ``window``-token rows packed from the three streams: ids, per-token loss weights, and the
    index of the example each token belongs to (attention never crosses examples; see ``weighted_loss``)."""
    streams = [reading_stream(recipe, tok, rng, progress), closed_book_stream(recipe, tok, rng),
               document_stream(recipe, tok, rng)]
    shares = [recipe.mix_reading, recipe.mix_closed_book, recipe.mix_documents]
    eos = tok.convert_tokens_to_ids(SPECIAL["eos_token"])
    while True:
        ids_rows, w_rows, seg_rows = [], [], []
        for _ in range(recipe.batch_size):
            ids, weights, segments = [], [], []
            while len(ids) < recipe.window + 1:
                new_ids, new_w = next(rng.choices(streams, shares)[0])
                segments = segments + [len(segments) and segments[-1] + 1] * (len(new_ids) + 1)
                ids = ids + new_ids + [eos]
                weights = weights + new_w + [0.0]
            ids_rows.append(ids[: recipe.window + 1])
            w_rows.append(weights[: recipe.window + 1])  # the example cut at the row's end is not continued
            seg_rows.append(segments[: recipe.window + 1])
        yield torch.tensor(ids_rows), torch.tensor(w_rows), torch.tensor(seg_rows)


# ---- model and loop --------------------------------------------------------------------------------------
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
        "closed_test": (qa_examples(world, "test", ("closed_book",), types=("single",)), False),
        "closed_pretrain": (qa_examples(world, "pretrain", ("closed_book",), types=("single",)), False),
    }
    for name, (examples, with_docs) in sets.items():
        chosen = list(examples)[:: 7][: recipe.eval_questions]
        prompts = [qa_prompt(e.question, e.passages if with_docs else None) for e in chosen]
        preds = lm.generate(prompts, max_new_tokens=12, stop=["\n"], batch_size=16)
        out[name] = {"em": 100 * sum(exact_match(p, [e.answer]) for p, e in zip(preds, chosen)) / len(chosen),
                     "f1": 100 * sum(f1(p, [e.answer]) for p, e in zip(preds, chosen)) / len(chosen)}
    return out


def train(recipe: Recipe, out_dir: Path, log=print) -> dict:
    recipe.validate()
    torch.set_num_threads(recipe.threads)
    rng = random.Random(recipe.seed)
    start = time.time()
    if recipe.init_from:
        tok, model = load_stage(recipe)
        log(f"continuing from {recipe.init_from}")
    else:
        tok = train_tokenizer(recipe)
        log(f"tokenizer: {len(tok)} tokens ({time.time() - start:.0f}s)")
        model = build_model(recipe, tok)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params / 1e6:.2f}M parameters")
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
        if step < recipe.warmup_steps:
            lr = recipe.lr * (step + 1) / recipe.warmup_steps
        else:
            frac = min(1.0, (step - recipe.warmup_steps) / max(1, total - recipe.warmup_steps))
            lr = recipe.lr * (recipe.min_lr_ratio + (1 - recipe.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))
        for group in opt.param_groups:
            group["lr"] = lr
        progress["frac"] = step / total
        ids, weights, segments = next(batches)
        model.train()
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
    model.save_pretrained(out_dir)
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
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    args = vars(parser.parse_args(argv))
    out, install = args.pop("out"), args.pop("install")
    recipe = Recipe(**args)
    train(recipe, out, log=lambda msg: print(msg, flush=True))
    if install:
        print(f"installed as the default model: {install_model(out)}")


def install_model(out: Path) -> Path:
    """Copy a built world LM into the package as memkit's default model."""
    from memkit.defaults import PACKAGED_MODEL

    if PACKAGED_MODEL.exists():
        shutil.rmtree(PACKAGED_MODEL)
    shutil.copytree(out, PACKAGED_MODEL)
    return PACKAGED_MODEL


if __name__ == "__main__":
    main()
