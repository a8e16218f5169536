"""The adapter state of a context: per target module an R x R matrix, the sum over the context's tokens of
outer products of two projections of each token's hidden state.

Owns: ``AdapterState``, its algebra (states of chunks and of documents add; subtracting a document's state
removes its knowledge exactly, up to float rounding), and conversion to and from named numpy arrays for the
blob store. Must not know models, generators or storage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from memkit.errors import ConfigError


@dataclass
class AdapterState:
    """``mats[name]``: ``[R, R]`` (or ``[batch, R, R]``, one state per sequence) for each target module;
    ``tokens``: how many context tokens went into it (0 for the empty state)."""

    mats: dict[str, torch.Tensor] = field(default_factory=dict)
    tokens: int = 0

    @classmethod
    def zeros(cls, names: list[str], rank: int, *, dtype=torch.float32, device="cpu") -> AdapterState:
        return cls({n: torch.zeros(rank, rank, dtype=dtype, device=device) for n in names}, 0)

    def _check(self, other: AdapterState) -> None:
        if set(self.mats) != set(other.mats):
            raise ConfigError("adapter states target different modules; they cannot be combined")
        for name, m in self.mats.items():
            if m.shape[-2:] != other.mats[name].shape[-2:]:
                raise ConfigError(f"adapter states of {name} have sizes {list(m.shape)} and "
                                  f"{list(other.mats[name].shape)}; they cannot be combined")

    def __add__(self, other: AdapterState) -> AdapterState:
        self._check(other)
        return AdapterState({n: m + other.mats[n] for n, m in self.mats.items()}, self.tokens + other.tokens)

    def __sub__(self, other: AdapterState) -> AdapterState:
        self._check(other)
        return AdapterState({n: m - other.mats[n] for n, m in self.mats.items()}, self.tokens - other.tokens)

    @staticmethod
    def total(states: list[AdapterState]) -> AdapterState:
        """The sum of ``states`` (at least one)."""
        if not states:
            raise ConfigError("no adapter states to merge")
        out = states[0]
        for s in states[1:]:
            out = out + s
        return out

    @staticmethod
    def stack(states: list[AdapterState]) -> AdapterState:
        """One batched state (``[n, R, R]`` per module) of ``n`` single states, row i from ``states[i]``."""
        if not states:
            raise ConfigError("no adapter states to stack")
        return AdapterState({n: torch.stack([s.mats[n] for s in states]) for n in states[0].mats},
                            sum(s.tokens for s in states))

    def scaled_to(self, weight: float) -> AdapterState:
        """This state with each module's matrix scaled to Frobenius norm ``weight`` (how a merge by score
        weighs the states it adds)."""
        return AdapterState({n: m * (weight / m.norm().clamp(min=1e-12)) for n, m in self.mats.items()},
                            self.tokens)

    def detach(self) -> AdapterState:
        return AdapterState({n: m.detach() for n, m in self.mats.items()}, self.tokens)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Named float32 arrays (one per module, plus ``__tokens__``) for the blob store."""
        arrays = {n: m.detach().float().cpu().numpy() for n, m in self.mats.items()}
        arrays["__tokens__"] = np.array([self.tokens], dtype=np.int64)
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], *, device="cpu") -> AdapterState:
        tokens = int(arrays["__tokens__"][0]) if "__tokens__" in arrays else 0
        mats = {n: torch.from_numpy(np.array(a, dtype=np.float32)).to(device)
                for n, a in arrays.items() if n != "__tokens__"}
        return cls(mats, tokens)
