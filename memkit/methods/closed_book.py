"""Closed-book answering: the frozen LM answers from its own weights; documents are kept but never read.

The lower bound every memory method is measured against. Knows nothing of storage.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from memkit.methods.base import Answer, Context, Record, Retrieved
from memkit.methods.common import TextAnswerer, TextFormatConfig, text_format


@dataclasses.dataclass
class ClosedBookConfig(TextFormatConfig):
    """Options of closed-book answering (only the answer length)."""


class ClosedBook:
    name = "closed_book"
    needs_payload = False
    key_dim = None

    def __init__(self, lm, config: ClosedBookConfig):
        self.lm = lm
        self.config = config
        self.answerer = TextAnswerer(lm, config.max_new_tokens, text_format(lm, config))

    def config_dict(self) -> dict:
        return self.config.to_dict()

    def encode(self, texts: Sequence[str]) -> list[list[Record]]:
        return [[] for _ in texts]

    def query_key(self, question: str):
        return None

    def search_size(self, top_k: int | None) -> int:
        return 0

    def combine(self, question: str, retrieved: list[Retrieved], top_k: int | None = None) -> Context:
        return Context(question=question)

    def answer(self, context: Context) -> Answer:
        return self.answerer.answer(context, self.name)

    def answer_many(self, contexts: Sequence[Context], batch_size: int = 8) -> list[Answer]:
        return self.answerer.answer_many(list(contexts), self.name, batch_size=batch_size)
