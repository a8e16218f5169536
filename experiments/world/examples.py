"""Question-answer training examples for the world LM's recipe: reading comprehension and closed book.

Owns: pairing each question with the texts it should be read with. ``reading`` examples carry the gold
documents (in reading order: the biography, then its updates by date, or the biography then the employer's
document) and optionally distractor documents of the same split at random places among them; ``closed_book``
examples carry no documents (the facts must already be in the weights). Callers format an example as
``memkit.prompts.qa_prompt(question, passages) + " " + answer`` and a newline.
Knows nothing of models, tokenizers or memkit's engine.
"""

from __future__ import annotations

import random
from typing import Iterator, NamedTuple

from experiments.world.entities import World
from experiments.world.questions import QUESTION_TYPES, questions
from experiments.world.render import Document, documents

EXAMPLE_KINDS = ("reading", "closed_book")


class QAExample(NamedTuple):
    passages: list[str]     # document texts to put in the prompt; empty for closed book
    question: str
    answer: str             # the canonical gold answer


def _distractor(rng: random.Random, docs: list[Document], avoid: set[str]) -> Document | None:
    """A random document about none of the entities in ``avoid``; None if a few draws find none."""
    for _ in range(32):
        doc = rng.choice(docs)
        if doc.entity not in avoid:
            return doc
    return None


def qa_examples(world: World, split: str, kinds: tuple[str, ...] = ("reading",), *,
                types: tuple[str, ...] = QUESTION_TYPES, phrasings: int = 1, distractors: int = 0,
                seed: int = 0) -> Iterator[QAExample]:
    """Examples of ``split`` for every question of ``types``, once per kind in ``kinds``.

    phrasings: distinct wordings per fact (1-3); more gives the LM more varied questions about the same facts.
    distractors: documents of the same split, about other entities, mixed in among the gold ones.
    seed: picks the distractors and where they go; the questions themselves follow the world's seed.
    """
    unknown = [k for k in kinds if k not in EXAMPLE_KINDS] + [t for t in types if t not in QUESTION_TYPES]
    if unknown:
        raise ValueError(f"unknown kind or type {unknown[0]!r}; kinds: {EXAMPLE_KINDS}, types: {QUESTION_TYPES}")
    if distractors < 0:
        raise ValueError("distractors must be >= 0")
    docs = documents(world, split)
    by_id = {d.id: d for d in docs}
    rng = random.Random(f"memkit-world-examples:{world.config.seed}:{split}:{seed}")
    for q in questions(world, split, phrasings):
        if q.type not in types:
            continue
        for kind in kinds:
            if kind == "closed_book":
                yield QAExample([], q.question, q.answers[0])
                continue
            passages = [by_id[i].text for i in q.doc_ids]
            gold_entities = {by_id[i].entity for i in q.doc_ids}
            for _ in range(distractors):
                other = _distractor(rng, docs, gold_entities)
                if other is not None:
                    passages.insert(rng.randint(0, len(passages)), other.text)
            yield QAExample(passages, q.question, q.answers[0])
