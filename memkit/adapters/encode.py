"""Reading documents into adapter states, in chunks of at most ``chunk_tokens`` tokens.

Two modes, as in GenerativeAdapter:
  - ``parallel``: every chunk is read by the frozen LM on its own; a document's state is the sum of its
    chunks' states (chunks of many documents share batches);
  - ``sequential``: chunk t is read with the adapter of chunks 0..t-1 already applied, so later chunks are read
    in the light of earlier ones; the state is again the sum.
On a one-chunk document both modes read the same text with no adapter and agree exactly.

Owns: cutting token ids into chunks and running the frozen LM over them. The frozen LM's hidden states never
carry gradients; the generator's maps do when ``grad`` is on (training). Must not know storage or the CLI.
"""

from __future__ import annotations

from typing import Sequence

import torch

from memkit.adapters.generator import AdapterGenerator
from memkit.adapters.state import AdapterState
from memkit.errors import ConfigError

MODES = ("parallel", "sequential")


def chunk_ids(ids: list[int], chunk_tokens: int) -> list[list[int]]:
    """``ids`` cut into consecutive pieces of at most ``chunk_tokens`` (an empty text gives no chunk)."""
    if chunk_tokens < 1:
        raise ConfigError("chunk_tokens must be at least 1")
    return [ids[i:i + chunk_tokens] for i in range(0, len(ids), chunk_tokens)]


def chunk_states(lm, gen: AdapterGenerator, chunks: list[list[int]], *, delta=None,
                 grad: bool = False) -> AdapterState:
    """One state per chunk (``[n, R, R]`` per target); ``bos_ids`` lead each chunk but are not summed in."""
    lead = lm.bos_ids
    inputs: dict[str, torch.Tensor] = {}
    handles = []
    if gen.config.key_source == "input":
        modules = lm.linear_modules()

        def keep(name):
            def hook(module, args):
                inputs[name] = args[0].detach()
            return hook

        handles = [modules[n].register_forward_pre_hook(keep(n)) for n in gen.config.targets]
    try:
        hidden, mask = lm.hidden_states([lead + c for c in chunks], delta=delta)
    finally:
        for h in handles:
            h.remove()
    mask = mask.clone()
    mask[:, : len(lead)] = 0
    with torch.set_grad_enabled(grad):
        return gen.states(hidden, mask.to(gen.device), inputs or None)


def _split(state: AdapterState, counts: list[int]) -> list[AdapterState]:
    """Per-row states of a batched state, each with its own token count."""
    return [AdapterState({n: m[i] for n, m in state.mats.items()}, counts[i]) for i in range(len(counts))]


def encode_documents(lm, gen: AdapterGenerator, texts: Sequence[str | Sequence[int]], *, chunk_tokens: int,
                     mode: str = "parallel", batch_size: int = 16, grad: bool = False) -> list[AdapterState]:
    """Each text's adapter state (texts may be strings or token ids)."""
    if mode not in MODES:
        raise ConfigError(f"unknown adapter mode {mode!r}; choose parallel or sequential")
    width = lm.max_context - len(lm.bos_ids)
    if not 1 <= chunk_tokens <= width:
        raise ConfigError(f"option chunk_tokens={chunk_tokens} must be between 1 and {width} for this model")
    docs = [chunk_ids(lm.encode(t) if isinstance(t, str) else [int(i) for i in t], chunk_tokens) for t in texts]
    totals = [gen.empty_state() for _ in docs]
    if mode == "parallel":
        flat = [(d, c) for d, chunks in enumerate(docs) for c in chunks]
        for start in range(0, len(flat), batch_size):
            part = flat[start:start + batch_size]
            states = _split(chunk_states(lm, gen, [c for _, c in part], grad=grad), [len(c) for _, c in part])
            for (d, _), s in zip(part, states):
                totals[d] = totals[d] + s
        return totals
    longest = max((len(c) for c in docs), default=0)
    for t in range(longest):
        live = [d for d, chunks in enumerate(docs) if t < len(chunks)]
        for start in range(0, len(live), batch_size):
            rows = live[start:start + batch_size]
            delta = None
            if t > 0:
                before = AdapterState({n: torch.stack([totals[d].mats[n].detach() for d in rows])
                                       for n in gen.config.targets}, 0)
                with torch.no_grad():
                    delta = gen.delta(before)
            chunks = [docs[d][t] for d in rows]
            states = _split(chunk_states(lm, gen, chunks, delta=delta, grad=grad), [len(c) for c in chunks])
            for d, s in zip(rows, states):
                totals[d] = totals[d] + s
    return totals
