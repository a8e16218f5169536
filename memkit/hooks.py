"""The two hook points through which memory reaches a frozen LM: low-rank weight deltas and key/value prefixes.

Owns: the ``LowRankDelta`` and ``Prefix`` value types, finding the targetable linear modules of a Hugging Face
causal LM (``nn.Linear`` and transformers' GPT-2 style ``Conv1D``) and the per-layer attention/MLP output
projections of any family, the forward hooks that add a delta to a module's output without touching its weight,
and building a transformers ``DynamicCache`` that holds a prefix.

Must not know: where deltas or prefixes come from (methods, generators, the store), SQL, the CLI. It never
changes a base weight: every effect is a forward hook that is removed when its context exits.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch
from torch import nn
from transformers import DynamicCache
from transformers.pytorch_utils import Conv1D

from memkit.errors import ConfigError

# Names, relative to one decoder layer, of the output projections of each kind, across families:
# llama/mistral/qwen2 (o_proj, down_proj), gpt2 (attn.c_proj, mlp.c_proj), gpt_neox (attention.dense,
# mlp.dense_4h_to_h), and a few other common layouts (opt, phi, gpt-j/neo, falcon, bloom).
_OUTPUT_PROJECTIONS = {
    "attn_out": ("self_attn.o_proj", "attn.c_proj", "attention.dense", "self_attention.dense",
                 "self_attn.out_proj", "attn.out_proj", "attn.attention.out_proj", "self_attn.dense"),
    "mlp_out": ("mlp.down_proj", "mlp.c_proj", "mlp.dense_4h_to_h", "mlp.fc2", "fc2", "mlp.fc_out",
                "feed_forward.w2"),
}


@dataclass
class LowRankDelta:
    """Per target module: ``y = W x + scale * B (A x)``.

    ``factors`` maps a full module name (see ``FrozenLM.linear_modules``) to ``(A, B)`` with ``A: [r, d_in]`` and
    ``B: [d_out, r]``. Either may also carry a leading batch dimension (``[batch, r, d_in]``, ``[batch, d_out, r]``,
    batch 1 broadcasts) so that each sequence of a batch gets its own delta. Factors may require grad; the hooks
    keep them in the autograd graph.
    """

    factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    scale: float = 1.0

    def rows(self, start: int, stop: int, total: int) -> LowRankDelta:
        """The delta of sequences ``start:stop`` of a batch of ``total``: per-sequence factors are sliced."""
        return LowRankDelta({name: (_rows(a, start, stop, total, name), _rows(b, start, stop, total, name))
                             for name, (a, b) in self.factors.items()}, self.scale)


@dataclass
class Prefix:
    """Per decoder layer key/value prefix read by the frozen LM (P-tuning-v2 style).

    ``keys[l]`` and ``values[l]`` have shape ``[batch or 1, n_kv_heads, P, head_dim]``, in the layout the model's
    attention caches them (keys after rotary embedding where the family uses it). The prefix sits at positions
    ``0..P-1``; text read with it starts at position ``P``.
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    @property
    def length(self) -> int:
        """Number of prefix positions ``P`` (0 for an empty prefix)."""
        return int(self.keys[0].shape[-2]) if self.keys else 0

    def rows(self, start: int, stop: int, total: int) -> Prefix:
        """The prefix of sequences ``start:stop`` of a batch of ``total``: per-sequence tensors are sliced."""
        return Prefix([_rows(k, start, stop, total, f"prefix keys[{i}]") for i, k in enumerate(self.keys)],
                      [_rows(v, start, stop, total, f"prefix values[{i}]") for i, v in enumerate(self.values)])

    @classmethod
    def from_cache(cls, cache, *, detach: bool = True) -> Prefix:
        """The keys/values a transformers cache holds, one pair per layer."""
        keys, values = [], []
        for layer in cache.layers:
            k, v = layer.keys, layer.values
            keys.append(k.detach() if detach else k)
            values.append(v.detach() if detach else v)
        return cls(keys=keys, values=values)


def _rows(t: torch.Tensor, start: int, stop: int, total: int, what: str) -> torch.Tensor:
    """Rows ``start:stop`` of a per-sequence tensor (leading dimension ``total``); shared tensors as they are."""
    if t.dim() < 3 or t.shape[0] == 1:
        return t
    if t.shape[0] != total:
        raise ConfigError(f"{what} has a batch of {t.shape[0]}; expected 1 or {total}, one per sequence")
    return t[start:stop]


def linear_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every targetable linear of ``model`` by full module name: ``nn.Linear`` and ``Conv1D``."""
    return {name: m for name, m in model.named_modules() if isinstance(m, (nn.Linear, Conv1D))}


def module_shape(module: nn.Module) -> tuple[int, int]:
    """``(d_in, d_out)`` of a linear module; ``Conv1D`` stores its weight transposed (``[d_in, d_out]``)."""
    if isinstance(module, Conv1D):
        return int(module.weight.shape[0]), int(module.weight.shape[1])
    if isinstance(module, nn.Linear):
        return int(module.in_features), int(module.out_features)
    raise ConfigError(f"{type(module).__name__} is not a linear module a delta can target")


def decoder_layers(model: nn.Module, num_layers: int) -> tuple[str, nn.ModuleList]:
    """The name and ``ModuleList`` of the model's decoder layers (the first list with ``num_layers`` entries)."""
    for name, m in model.named_modules():
        if isinstance(m, nn.ModuleList) and len(m) == num_layers and num_layers > 0:
            return name, m
    raise ConfigError(f"cannot find the {num_layers} decoder layers of {type(model).__name__}")


def module_device(module: nn.Module, fallback: torch.device) -> torch.device:
    """Where ``module`` runs: the execution device of an accelerate hook a ``device_map`` put on it (its weights
    may be offloaded to the ``meta`` device), else the device of its first tensor not on ``meta``, else
    ``fallback``."""
    for m in module.modules():
        hook = getattr(m, "_hf_hook", None)
        for h in getattr(hook, "hooks", None) or ([hook] if hook is not None else []):
            dev = getattr(h, "execution_device", None)
            if dev is not None and torch.device(dev).type != "meta":
                return torch.device(dev)
        if m is module:
            for t in list(module.parameters()) + list(module.buffers()):
                if t.device.type != "meta":
                    return t.device
    for t in list(module.parameters()) + list(module.buffers()):
        if t.device.type == "meta":
            return t.device
    return fallback


def layer_devices(model: nn.Module, num_layers: int, fallback: torch.device) -> list[torch.device]:
    """The device each decoder layer runs on (``module_device``); a layer without tensors takes ``fallback``."""
    return [module_device(layer, fallback) for layer in decoder_layers(model, num_layers)[1]]


def target_module_names(model: nn.Module, num_layers: int, kind: str) -> list[str]:
    """Full names of the ``kind`` output projection (``attn_out`` or ``mlp_out``) of every decoder layer."""
    if kind not in _OUTPUT_PROJECTIONS:
        raise ConfigError(f"unknown target kind {kind!r}; choose one of {', '.join(_OUTPUT_PROJECTIONS)}")
    base, layers = decoder_layers(model, num_layers)
    names = []
    for i, layer in enumerate(layers):
        found = {n for n, m in layer.named_modules() if isinstance(m, (nn.Linear, Conv1D))}
        hit = next((c for c in _OUTPUT_PROJECTIONS[kind] if c in found), None)
        if hit is None:
            raise ConfigError(
                f"no {kind} projection found in decoder layer {i} of {type(model).__name__}; "
                f"name the target modules explicitly (linears there: {', '.join(sorted(found))})")
        names.append(f"{base}.{i}.{hit}")
    return names


def _check_factors(name: str, a: torch.Tensor, b: torch.Tensor, shape: tuple[int, int]) -> None:
    d_in, d_out = shape
    if a.dim() != b.dim() or a.dim() not in (2, 3):
        raise ConfigError(f"delta for {name}: A and B must both be 2-D ([r, d]) or both 3-D ([batch, r, d])")
    if a.shape[-1] != d_in or b.shape[-2] != d_out or a.shape[-2] != b.shape[-1]:
        raise ConfigError(
            f"delta for {name}: expected A [r, {d_in}] and B [{d_out}, r], got A {list(a.shape)} and B {list(b.shape)}")


def _delta_hook(a: torch.Tensor, b: torch.Tensor, scale: float):
    def hook(module, inputs, output):
        x = inputs[0]
        fa = a.to(device=output.device, dtype=output.dtype)
        fb = b.to(device=output.device, dtype=output.dtype)
        if fa.dim() == 2:
            extra = (x @ fa.T) @ fb.T
        else:  # per-sequence factors: x [B, T, d_in], A [B or 1, r, d_in], B [B or 1, d_out, r]
            extra = torch.matmul(torch.matmul(x, fa.transpose(-1, -2)), fb.transpose(-1, -2))
        return output + scale * extra
    return hook


@contextmanager
def delta_hooks(modules: dict[str, nn.Module], delta: LowRankDelta) -> Iterator[None]:
    """Add ``delta`` to the outputs of ``modules`` (by name) while the context is open; always remove the hooks."""
    for name, (a, b) in delta.factors.items():
        if name not in modules:
            raise ConfigError(f"delta targets {name!r}, which is not a linear module of this model")
        _check_factors(name, a, b, module_shape(modules[name]))
    handles = []
    try:
        for name, (a, b) in delta.factors.items():
            handles.append(modules[name].register_forward_hook(_delta_hook(a, b, float(delta.scale))))
        yield
    finally:
        for h in handles:
            h.remove()


def build_prefix_cache(prefix: Prefix, batch_size: int, *, config, num_layers: int, num_kv_heads: int,
                       head_dim: int, device: torch.device | Sequence[torch.device],
                       dtype: torch.dtype) -> DynamicCache:
    """A fresh ``DynamicCache`` holding ``prefix`` expanded to ``batch_size``; gradients flow to the prefix.
    ``device``: one for every layer, or one per layer (``layer_devices``: where each layer runs)."""
    if len(prefix.keys) != num_layers or len(prefix.values) != num_layers:
        raise ConfigError(f"prefix has {len(prefix.keys)} key and {len(prefix.values)} value tensors; "
                          f"this model has {num_layers} layers")
    devices = [device] * num_layers if isinstance(device, (torch.device, str)) else list(device)
    if len(devices) != num_layers:
        raise ConfigError(f"{len(devices)} devices given for the prefix of a model of {num_layers} layers")
    length = prefix.length
    data = []
    for i, (k, v) in enumerate(zip(prefix.keys, prefix.values)):
        for what, t in (("keys", k), ("values", v)):
            ok = t.dim() == 4 and t.shape[0] in (1, batch_size) and tuple(t.shape[1:]) == (num_kv_heads, length, head_dim)
            if not ok:
                raise ConfigError(f"prefix {what}[{i}] has shape {list(t.shape)}; expected "
                                  f"[{batch_size} or 1, {num_kv_heads}, {length}, {head_dim}]")
        k = k.to(device=devices[i], dtype=dtype).expand(batch_size, -1, -1, -1)
        v = v.to(device=devices[i], dtype=dtype).expand(batch_size, -1, -1, -1)
        data.append((k, v))
    return DynamicCache(data, config=config)
