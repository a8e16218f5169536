"""Gradient checkpointing through a frozen Hugging Face model's decoder layers, computing exactly what it computes
without it.

While ``recomputing(layers)`` is open, a decoder layer called with gradients enabled keeps none of its
activations for the backward pass; the backward pass runs the layer again (``torch.utils.checkpoint``,
non-reentrant) to get them. The model stays in eval mode throughout, so no dropout ever runs (transformers' own
gradient checkpointing works only in training mode, where GPT-2's attention dropout would act, and it drops the
key/value cache a prefix is read from). Replaying a layer in the backward pass must see what its first run saw,
so the wrapper keeps, from that run:
  - the forward hooks on the layer's modules (the low-rank deltas of ``memkit.hooks``, whose context has usually
    closed by the time the backward pass runs): the replay runs under exactly those hooks;
  - the state of each key/value cache passed in (a prefix): the layer appends its keys and values to it, and the
    replay must not see them twice.

Owns: that wrapper. Must not know: memory methods, training, storage or the CLI; it never changes a weight.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

try:  # transformers' cache base class (every cache a model is handed derives from it)
    from transformers.cache_utils import Cache
except ImportError:  # pragma: no cover - very old transformers
    Cache = ()

# nn.Module's hook tables a forward consults (torch keeps them as plain dicts on each module).
_HOOK_TABLES = ("_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_forward_hooks",
                "_forward_hooks_with_kwargs", "_forward_hooks_always_called")


def _hook_state(layer: nn.Module) -> list[tuple[nn.Module, dict]]:
    """Each module of ``layer`` with shallow copies of its forward-hook tables."""
    return [(m, {t: dict(getattr(m, t)) for t in _HOOK_TABLES if hasattr(m, t)}) for m in layer.modules()]


@contextmanager
def _hooks_as(state: list[tuple[nn.Module, dict]]) -> Iterator[None]:
    """The hook tables of ``state`` in place of the current ones while open (the current ones back after)."""
    current = []
    for m, tables in state:
        current.append((m, {t: getattr(m, t) for t in tables}))
        for t, table in tables.items():
            setattr(m, t, type(getattr(m, t))(table))
    try:
        yield
    finally:
        for m, tables in current:
            for t, table in tables.items():
                setattr(m, t, table)


def _caches(values) -> list:
    """The cache objects (and the self-attention cache inside an encoder-decoder one) among ``values``."""
    found = []
    for v in values:
        if Cache and isinstance(v, Cache):
            for c in (v, getattr(v, "self_attention_cache", None), getattr(v, "cross_attention_cache", None)):
                if c is not None and isinstance(getattr(c, "layers", None), list):
                    found.append(c)
    return found


def _cache_state(caches: list) -> list:
    return [(c, list(c.layers), [dict(vars(layer)) for layer in c.layers]) for c in caches]


def _restore_caches(state: list) -> None:
    for cache, layers, fields in state:
        cache.layers[:] = layers
        for layer, saved in zip(layers, fields):
            vars(layer).update(saved)


def _recomputed(forward: Callable, layer: nn.Module) -> Callable:
    def wrapped(*args, **kwargs):
        if not torch.is_grad_enabled():
            return forward(*args, **kwargs)
        caches = _cache_state(_caches((*args, *kwargs.values())))
        hooks = _hook_state(layer)
        first = [True]

        def run(*inputs):
            if first[0]:
                first[0] = False
                return forward(*inputs, **kwargs)
            _restore_caches(caches)
            with _hooks_as(hooks):
                return forward(*inputs, **kwargs)

        return checkpoint(run, *args, use_reentrant=False)

    return wrapped


@contextmanager
def recomputing(layers: list[nn.Module]) -> Iterator[None]:
    """While open, each of ``layers`` (a model's decoder layers) recomputes its activations in the backward pass
    instead of keeping them; everything is as before once it closes. Nested use adds nothing."""
    wrapped = []
    try:
        for layer in layers:
            if getattr(layer, "_memkit_recomputing", False):
                continue
            had = "forward" in vars(layer)          # accelerate's device hooks replace forward on the instance
            previous = vars(layer).get("forward")
            vars(layer)["forward"] = _recomputed(layer.forward, layer)
            vars(layer)["_memkit_recomputing"] = True
            wrapped.append((layer, had, previous))
        yield
    finally:
        for layer, had, previous in reversed(wrapped):
            del vars(layer)["_memkit_recomputing"]
            if had:
                vars(layer)["forward"] = previous
            else:
                del vars(layer)["forward"]
