"""Key encoders: text -> L2-normalised float32 vectors that memories are found by.

Owns: the ``Embedder`` interface and three encoders, chosen by a method's ``embedder`` option:
  - ``lexical`` (default): a hashed bag of words (lower-cased words, English function words dropped, log term
    frequency, signed feature hashing into ``dim`` buckets), the classic sparse retriever in a dense vector, so
    FAISS inner product is cosine word overlap. Needs no model, and names and rare words, which carry most
    factual questions, match exactly. Queries are weighted by inverse document frequency over the keys the
    store holds (``weigh_queries``), so a word every document has counts for little; ``lexical-tf`` leaves
    them unweighted. Stored keys carry no weights, so they never go stale as the store grows.
  - ``lm``: the frozen LM's own hidden states, mean pooled over a late-middle layer.
  - a sentence-embedding model's hub id or local directory.
Knows nothing of storage.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence

import math
import re
import zlib
from collections import Counter

import numpy as np
import torch


class Embedder(Protocol):
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """[len(texts), dim] float32, each row of unit length."""

    def describe(self) -> dict:
        """What identifies this encoder, recorded with the store."""


STOPWORDS = frozenset("""
a an the of in on at to for by with from into onto about as and or but nor if then than so not no yes
is are was were be been being am do does did done has have had having will would can could shall should may
might must it its this that these those there here which what who whom whose where when why how
he she they them his her hers their theirs him we us our you your i me my
""".split())
WORD = re.compile(r"[^\W_]+")


class LexicalEmbedder:
    """Hashed bag-of-words keys: each content word adds +-(1 + log count) to one of ``dim`` buckets; with
    ``idf``, queries are weighted by the buckets' inverse document frequency in the store."""

    def __init__(self, dim: int = 4096, *, idf: bool = True):
        if dim < 16:
            raise ValueError("a lexical key needs at least 16 dimensions")
        self.dim = dim
        self.idf = idf

    def words(self, text: str) -> Counter:
        return Counter(w for w in WORD.findall(text.lower()) if w not in STOPWORDS)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word, count in self.words(text).items():
                h = zlib.crc32(word.encode("utf-8"))
                out[row, h % self.dim] += (1.0 if h & 0x80000000 else -1.0) * (1.0 + math.log(count))
            norm = float(np.linalg.norm(out[row]))
            if norm > 0:
                out[row] /= norm
        return out

    def weigh_queries(self, keys: np.ndarray, frequencies: Callable[[], tuple[np.ndarray, int]]) -> np.ndarray:
        """``keys`` ([q, dim] from ``embed``) with each bucket scaled by ``1 + log((n + 1) / (df + 1))`` and
        renormalised, ``(df, n) = frequencies()`` being how many of the store's n keys use each bucket; the
        inner product with a stored key is then a cosine of IDF-weighted words (at most 1). Unchanged without
        ``idf`` or with an empty store."""
        if not self.idf:
            return keys
        df, n = frequencies()
        if n == 0 or len(df) != self.dim:
            return keys
        weighted = keys * (1.0 + np.log((n + 1.0) / (df + 1.0))).astype(np.float32)
        norms = np.linalg.norm(weighted, axis=1, keepdims=True)
        return np.where(norms > 0, weighted / np.maximum(norms, 1e-12), weighted).astype(np.float32)

    def describe(self) -> dict:
        return {"embedder": "lexical" if self.idf else "lexical-tf", "dim": self.dim}


class LMEmbedder:
    """Keys from the frozen LM itself: mean-pooled hidden states of one layer."""

    def __init__(self, lm, layer: int | None = None):
        self.lm = lm
        self.layer = layer
        self.dim = lm.hidden_size

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.lm.embed(list(texts), layer=self.layer)

    def describe(self) -> dict:
        return {"embedder": "lm", "layer": self.layer}


class EncoderEmbedder:
    """Keys from a separate encoder model (e.g. a sentence-embedding model), mean pooled and normalised."""

    def __init__(self, name_or_path: str, *, device: torch.device | str = "cpu", batch_size: int = 32,
                 max_length: int = 512):
        from memkit.loading import load_pretrained
        from transformers import AutoModel, AutoTokenizer

        self.name = name_or_path
        self.model, self.tokenizer = load_pretrained(AutoModel, AutoTokenizer, name_or_path)
        self.model.to(device).eval().requires_grad_(False)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.max_length = min(max_length, getattr(self.model.config, "max_position_embeddings", max_length))
        self.dim = int(self.model.config.hidden_size)

    @torch.no_grad()
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = []
        for i in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(list(texts[i:i + self.batch_size]), padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt").to(self.device)
            hidden = self.model(**batch).last_hidden_state.float()
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy())
        return np.concatenate(out, 0).astype(np.float32) if out else np.zeros((0, self.dim), np.float32)

    def describe(self) -> dict:
        return {"embedder": self.name}


def build_embedder(lm, embedder: str, layer: int | None) -> Embedder:
    """``"lexical"`` -> hashed words, queries IDF-weighted (``"lexical-tf"``: not weighted); ``"lm"`` -> the
    frozen LM's own states; anything else is a hub id or a directory of an encoder."""
    if embedder in ("lexical", "lexical-tf"):
        return LexicalEmbedder(idf=embedder == "lexical")
    if embedder == "lm":
        return LMEmbedder(lm, layer)
    return EncoderEmbedder(embedder, device=lm.device)
