"""The world LM's training data: its tokenizer and the streams of examples packed into training rows.

Owns: the byte-level BPE tokenizer (trained on world text of the pretrain and train splits, never a test
document) and four example streams, mixed by ``Recipe`` shares:
  - reading: documents in the prompt (biography, updates, employer, plus distractors), then several questions
    about them, on train-split entities of freshly seeded worlds, so reading is learnt on ever-new facts; the
    loss falls on the answers (lightly on the documents and questions); early examples read snippets;
  - closed book: questions about the pretrain entities with no documents (their facts go into the weights);
  - documents: the pretrain entities' documents as plain text;
  - copy: a list of world words, then the same list again (loss on the repeat), which teaches the multi-token
    copying that answering from a document needs.
Test entities never appear in any stream. Knows nothing of models or the training loop.
"""

from __future__ import annotations

import random
from typing import Iterator

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from experiments.world.entities import WorldConfig, build_world
from experiments.world.examples import qa_examples
from experiments.world.lm_recipe import Recipe
from experiments.world.render import documents
from memkit.prompts import qa_prompt

SPECIAL = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
Example = tuple[list[int], list[float]]


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


def _qa_tokens(tok, passages: list[str], qas: list[tuple[str, str]], passage_weight: float,
               question_weight: float = 0.0) -> Example:
    """Passages, then one or more question/answer turns in memkit's prompt format.

    Loss weights: each answer (and its closing newline) 1, passages ``passage_weight``, questions
    ``question_weight`` (the "Question:"/"Answer:" words included). The pieces
    are cut at newlines, where byte-level BPE never merges across, so the ids equal the whole text's ids.
    """
    body = qa_prompt("x", passages)[: -len(qa_prompt("x"))]
    ids = tok.encode(body, add_special_tokens=False) if body else []
    weights = [passage_weight] * len(ids)
    for i, (question, answer) in enumerate(qas):
        head = tok.encode(("\n" if i else "") + qa_prompt(question), add_special_tokens=False)
        tail = tok.encode(" " + answer + "\n", add_special_tokens=False)
        ids += head + tail
        weights += [question_weight] * len(head) + [1.0] * len(tail)
    return ids, weights


def _plain_values() -> tuple[str, ...]:
    from experiments.world.names import HOBBIES, INDUSTRIES, OCCUPATIONS

    return OCCUPATIONS + HOBBIES + INDUSTRIES


PLAIN_VALUES = _plain_values()


def states_a_fact(sentence: str) -> bool:
    """True for a sentence that states a value: a number, a name (a capitalised word after the first) or a
    trade, pastime or industry. World filler sentences hold none of these."""
    words = sentence.split()
    return (any(c.isdigit() for c in sentence) or any(w[:1].isupper() for w in words[1:])
            or any(v in sentence for v in PLAIN_VALUES))


def snippet(text: str, answers: list[str], keep: float, rng: random.Random, facts: bool = False) -> str:
    """The first sentence, every sentence holding an answer, each other sentence with chance ``keep``; with
    ``facts``, every sentence that states a fact stays too, so values of the same kind as the answer (a birth city
    beside the home city) still compete and only filler is dropped."""
    sentences = [s for s in text.replace("\n", " ").split(". ") if s.strip()]
    kept = [s for i, s in enumerate(sentences)
            if i == 0 or any(a in s for a in answers) or (facts and states_a_fact(s)) or rng.random() < keep]
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
                keep = recipe.snippet_keep * (min(1.0, progress["frac"] / recipe.snippet_until)
                                              if recipe.snippet_grow else 1.0)
                facts = progress["frac"] >= recipe.snippet_facts_from
                passages = [snippet(p, [a for _, a in qas], keep, rng, facts) for p in passages]
            yield _qa_tokens(tok, passages, qas, recipe.passage_weight, recipe.question_weight)


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


def copy_stream(recipe: Recipe, tok, rng: random.Random) -> Iterator[Example]:
    """A list of 4 to 16 random world words (names, organisations, cities, years, trades, pastimes), then the
    same list again; the loss falls on the repeat, where each token follows from the token before it in the
    first list (the multi-token copying that answering from a document needs)."""
    from experiments.world.names import build_pools, org_names, person_names

    pools = build_pools(WorldConfig().pool_seed)
    splits = ("pretrain", "train")       # never a test entity's name
    people = [name for split in splits for name, _ in person_names(pools, split)]
    kinds = [people, [o for split in splits for o in org_names(pools, split)], list(pools.cities),
             [str(y) for y in range(1850, 2016)], list(pools.occupations), list(pools.hobbies),
             list(pools.industries)]
    while True:
        items = [rng.choice(rng.choice(kinds)) for _ in range(rng.randint(4, 16))]
        first = tok.encode("List: " + ", ".join(items) + ".\n", add_special_tokens=False)
        again = tok.encode("Again: " + ", ".join(items) + ".", add_special_tokens=False)
        yield first + again, [0.0] * (len(first) + 1) + [recipe.copy_weight] * (len(again) - 1)


def packed_batches(recipe: Recipe, tok, rng: random.Random,
                   progress: dict) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Batches of ``window``-token rows packed from the three streams: ids, per-token loss weights, and the
    index of the example each token belongs to (attention never crosses examples; see ``weighted_loss``)."""
    streams = [reading_stream(recipe, tok, rng, progress), closed_book_stream(recipe, tok, rng),
               document_stream(recipe, tok, rng)]
    streams.append(copy_stream(recipe, tok, rng))
    shares = [recipe.mix_reading, recipe.mix_closed_book, recipe.mix_documents, recipe.mix_copy]
    reading_only = [recipe.mix_reading, 0.0, 0.0, recipe.mix_copy]
    eos = tok.convert_tokens_to_ids(SPECIAL["eos_token"])
    while True:
        ids_rows, w_rows, seg_rows = [], [], []
        window = recipe.short_window if progress["frac"] < recipe.short_until else recipe.window
        for _ in range(recipe.batch_size * recipe.window // window):
            ids, weights, segments = [], [], []
            while len(ids) < window + 1:
                mix = reading_only if progress["frac"] < recipe.reading_only_until else shares
                new_ids, new_w = next(rng.choices(streams, mix)[0])
                segments = segments + [len(segments) and segments[-1] + 1] * (len(new_ids) + 1)
                ids = ids + new_ids + [eos]
                weights = weights + new_w + [0.0]
            ids_rows.append(ids[: window + 1])
            w_rows.append(weights[: window + 1])  # the example cut at the row's end is not continued
            seg_rows.append(segments[: window + 1])
        yield torch.tensor(ids_rows), torch.tensor(w_rows), torch.tensor(seg_rows)


# ---- model and loop --------------------------------------------------------------------------------------
