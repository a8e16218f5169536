"""What answering costs: parameters, FLOPs per question, peak memory and bytes stored per document.

Owns the cost formulas the benchmark reports, so they are written down once:

* ``P`` = non-embedding parameters: every parameter of the model except embedding tables (token and position),
  with the output head counted even when it shares the token embedding's weight (it is a matmul per token).
* Answering one question: ``2 * P * (prompt tokens + generated tokens + read tokens)``, prompt tokens including
  what the tokenizer puts in front (a forward pass costs about 2 FLOPs per parameter per token); read tokens are
  what a method reads of the question before answering (``slots``, ``hybrid``: the slot model's read, its slot
  positions included; the slot model's own heads and cross-attention, about 2M parameters, are left out). The attention-score term
  and a LoRA's own ``2 r (d_in + d_out)`` per adapted module are left out (small at these context lengths).
* Encoding (the method's work at ingest), amortised over the questions asked of what was ingested:
  ``closed_book`` 0; ``prompt`` ``2 * P * T_docs`` (one read of each document for its key); ``rag``
  ``2 * P * T_chunks`` (chunks overlap, so ``T_chunks`` >= ``T_docs``); ``finetune`` ``4 * P * T_trained``
  (forward plus the backward pass to the activations, every pass over every window; the frozen base needs no
  weight gradients, so not the usual 6); any other method ``2 * P * T_docs`` times
  its ``reads_per_document`` (``hybrid`` reads each document twice: generator and slot model). Keys made by a separate
  embedding model are counted as if the frozen LM made them.
* ``flops_per_question`` = answering FLOPs of the question + encode FLOPs / questions asked.
* Peak memory: ``torch.cuda.max_memory_allocated`` since the method's run began on CUDA; elsewhere the
  process's peak resident set size (``getrusage``), which never goes down, so later methods of one run
  report at least what earlier ones did.
* Bytes per document: (payload blob bytes + key bytes + document text bytes + method state bytes) / documents,
  from ``Store.stats()``.

Knows nothing of storage internals or the CLI; reads a model's parameters and a method's public attributes.
"""

from __future__ import annotations

import resource
import sys

import torch
from torch import nn


def non_embedding_params(model: nn.Module) -> int:
    """Parameters of ``model`` less its embedding tables; a tied output head is counted once as compute."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        if id(p) not in embeddings:
            total += p.numel()
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None and id(head.weight) in embeddings:
        total += head.weight.numel()
    return int(total)


def answer_flops(params: int, tokens: int) -> float:
    """FLOPs of reading ``tokens`` tokens forward once: ``2 * P * tokens``."""
    return 2.0 * params * tokens


def encode_forward_tokens(method, lm, texts: list[str]) -> int:
    """Tokens a method reads forward (no backward) to encode ``texts``, per the module doc's table.

    ``finetune`` reads with a backward pass; it counts those tokens itself (``trained_tokens``).
    """
    lead = len(lm.bos_ids)
    if method.name in ("closed_book", "finetune"):
        return 0
    if method.name == "rag" and hasattr(method, "chunks"):
        return sum(lm.count_tokens(t[a:b]) + lead for t in texts for a, b in method.chunks(t))
    return getattr(method, "reads_per_document", 1) * sum(lm.count_tokens(t) + lead for t in texts)


def encode_flops(params: int, forward_tokens: int, trained_tokens: int) -> float:
    """``2 * P`` per token read forward plus ``4 * P`` per token trained (forward and backward)."""
    return 2.0 * params * forward_tokens + 4.0 * params * trained_tokens


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA memory allocated on ``device`` since the last reset, else the process's peak RSS, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10   # bytes on macOS, KiB on Linux


def stored_bytes(stats: dict) -> int:
    """Bytes a store keeps for its documents and memories (payloads, keys, texts, method state)."""
    return int(sum(stats.get(k) or 0 for k in ("blob_bytes", "key_bytes", "text_bytes", "state_bytes")))
