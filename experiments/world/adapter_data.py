"""Training and evaluation items for the adapter generator (and later the slot compressor), from the world.

Owns: a stream of ``ContextQA`` items (the gold documents of one entity's questions, and up to
``max_questions`` of those questions) on training-split entities of ever new worlds, so the generator learns
to absorb facts it has never seen; and a fixed held-out set on the benchmark world's training entities for
probing during training. Test entities are never used here. Knows nothing of models.
"""

from __future__ import annotations

import random
from typing import Iterator

from experiments.world.entities import WorldConfig, build_world
from experiments.world.examples import qa_examples
from memkit.adapters.train import ContextQA


TRAINING_TYPES = ("single", "current", "as_of", "two_hop")
"""The question types training items ask: as-of items carry the documents dated up to their day (what a store
asked ``as_of`` that day returns) and ask about that day."""


def context_items(world, split: str, rng: random.Random, *, max_questions: int = 4,
                  types: tuple[str, ...] = TRAINING_TYPES) -> list[ContextQA]:
    """One item per distinct set of gold documents: those documents, and up to ``max_questions`` questions
    (one phrasing per distinct answer, chosen at random) answered from them."""
    groups: dict[tuple[str, ...], dict[str, str]] = {}
    for ex in qa_examples(world, split, ("reading",), types=types, phrasings=3, seed=rng.randrange(10**6)):
        by_answer = groups.setdefault(tuple(ex.passages), {})
        if ex.answer not in by_answer or rng.random() < 0.5:
            by_answer[ex.answer] = ex.question
    items = []
    for docs, qas in groups.items():
        pairs = [(q, a) for a, q in qas.items()]
        rng.shuffle(pairs)
        items.append(ContextQA(list(docs), pairs[:max_questions]))
    return items


def training_items(seed: int = 0, *, max_questions: int = 4) -> Iterator[ContextQA]:
    """Endless items on training-split entities of fresh worlds (world seeds 20,000 + 1,000 x seed + k)."""
    rng = random.Random(seed)
    world_seed = 20_000 + 1000 * seed
    while True:
        world_seed += 1
        world = build_world(WorldConfig(seed=world_seed, n_pretrain=0, n_test=0))
        items = context_items(world, "train", rng, max_questions=max_questions)
        rng.shuffle(items)
        yield from items


def heldout_items(n: int = 48, *, world_seed: int = 0) -> list[ContextQA]:
    """A fixed set of single-fact items on the benchmark world's training entities (one question each)."""
    world = build_world(WorldConfig(seed=world_seed))
    items = context_items(world, "train", random.Random(1), max_questions=1, types=("single",))
    return items[:: max(1, len(items) // n)][:n]
