"""The adapter generator: per target linear module, small trainable maps that turn the frozen LM's hidden states
of a context into an ``AdapterState``, and that state into a ``LowRankDelta`` the frozen LM applies.

Per target module (in decoder layer l, ``W: d_in -> d_out``), trainable: an RMSNorm weight ``g`` over the model
width d, ``A1: d_in -> R``, ``A2: d -> R``, ``A3: d -> R`` and ``B: R -> d_out`` (B starts at zero, so a fresh
generator changes nothing). With ``h`` the hidden states entering layer l and ``h' = RMSNorm_g(h)``:

    state   S = sum over context tokens t of (A2 h'_t)(A3 h'_t)^T                      [R, R]
    norm    N = U_r V_r^T, from the rank-r SVD S ~ U_r diag(s) V_r^T                   (scale does not matter)
    delta   y = W x + (alpha / R) * B N^T A1 x = W x + scale * (B V_r) (U_r^T A1) x    (a rank-r LoRA)

The SVD's basis is computed without gradient and the gradient reaches S through ``V_r = S^T U_r diag(1/s)``
(exactly ``V_r`` in the forward pass), which keeps training stable when singular values come close.

Owns: ``GeneratorConfig`` (saved beside the weights, with the base model it belongs to), ``AdapterGenerator``,
reading states from hidden states, the normalisation, save/load through safetensors. Must not know storage,
the CLI or how contexts are chunked (``memkit.adapters.encode``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from memkit import artifacts
from memkit.adapters.state import AdapterState
from memkit.errors import ConfigError
from memkit.hooks import LowRankDelta
from memkit.prompts import PROMPT_FORMATS
from memkit.train_config import KEY_SOURCES, NORMS

CONFIG_FILE = "generator.json"
WEIGHTS_FILE = "generator.safetensors"
KIND = artifacts.ArtifactKind("generator", CONFIG_FILE, WEIGHTS_FILE, "memkit train adapter")


@dataclass
class GeneratorConfig:
    """Everything that shapes a generator; saved as generator.json beside its weights."""

    targets: list[str] = field(default_factory=list)
    """Full names of the target linear modules (default: the attention output projection of every layer)."""
    layers: list[int] = field(default_factory=list)
    """Decoder layer of each target: its state reads the hidden states entering that layer."""
    shapes: list[list[int]] = field(default_factory=list)
    """(d_in, d_out) of each target."""
    hidden: int = 0
    """The model width d."""
    state_rank: int = 64
    """R: size of the state (R x R per target) and of the A/B maps."""
    svd_rank: int = 16
    """r: rank kept by the SVD normalisation; the applied delta is a rank-r LoRA."""
    alpha: float = 64.0
    """The delta is scaled by alpha / R."""
    norm: str = "svd"
    """How a state becomes a delta: ``svd`` (rank-r SVD, singular values set to 1: the method's normalisation) or
    ``frobenius`` (the whole state divided by its Frobenius norm: a rank-R delta that keeps relative weights)."""
    key_source: str = "hidden"
    """Where a token's key comes from: ``hidden`` (the hidden state entering the layer, like its value) or
    ``input`` (the target module's own input at that token: the space the question's query ``A1 x`` lives in;
    A2 then starts equal to A1, so a question already matches the context tokens that resemble it)."""
    base_rank: int = 0
    """Rank of a document-independent LoRA learnt with the generator and added to every delta (0: none). It
    gives the answer format and prior a place of their own, so the state's delta is left to carry the
    documents (without it, training pushes the prior into the state's shared directions and the deltas of all
    documents come out alike)."""
    mean_state: bool = False
    """Subtract, per context token, a learnt R x R matrix M (set from data by ``calibrate``) from the state:
    ``S = sum_t (p_t q_t^T - M)``. States still add exactly; what every text shares leaves the state, so the
    SVD keeps what sets a document apart."""
    center: bool = False
    """Subtract each chunk's mean (normalised) hidden state before the projections, so the state holds what sets
    the chunk apart rather than what every text shares."""
    base_model: str = ""
    """Fingerprint of the frozen LM the generator was built for (architecture and tokenizer)."""
    base_weights: str = ""
    """Digest of that LM's weights (``FrozenLM.weights_digest``): another checkpoint is refused too."""
    prompt_format: str = "plain"
    """The prompt format the generator was trained with (``memkit.prompts``); its method answers in it."""

    def validate(self) -> None:
        if not self.targets or len(self.targets) != len(self.layers) or len(self.targets) != len(self.shapes):
            raise ConfigError("a generator needs one layer index and one shape per target module")
        if self.state_rank < 1 or not 1 <= self.svd_rank <= self.state_rank:
            raise ConfigError("generator sizes must satisfy 1 <= svd_rank <= state_rank "
                              "(options svd_rank and state_rank)")
        if self.alpha <= 0:
            raise ConfigError("generator option alpha must be above 0")
        if self.base_rank < 0:
            raise ConfigError("generator option base_rank must be 0 or more")
        if self.key_source not in KEY_SOURCES:
            raise ConfigError(f"generator option key_source must be one of {', '.join(KEY_SOURCES)}, "
                              f"not {self.key_source!r}")
        if self.prompt_format not in PROMPT_FORMATS:
            raise ConfigError(f"generator option prompt_format must be one of {', '.join(PROMPT_FORMATS)}")
        if self.norm not in NORMS:
            raise ConfigError(f"generator option norm must be one of {', '.join(NORMS)}, not {self.norm!r}")

    @property
    def scale(self) -> float:
        return self.alpha / self.state_rank


class _RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        return x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class TargetGenerator(nn.Module):
    """The generator of one target module."""

    def __init__(self, hidden: int, d_in: int, d_out: int, rank: int, key_source: str = "hidden",
                 base_rank: int = 0, mean_state: bool = False, center: bool = False):
        super().__init__()
        self.center = center
        self.mean = nn.Parameter(torch.zeros(rank, rank)) if mean_state else None
        self.base_a = nn.Parameter(torch.randn(base_rank, d_in) / d_in ** 0.5) if base_rank else None
        self.base_b = nn.Parameter(torch.zeros(d_out, base_rank)) if base_rank else None
        self.norm = _RMSNorm(hidden)
        self.a1 = nn.Linear(d_in, rank, bias=False)
        self.key_norm = _RMSNorm(d_in) if key_source == "input" else None
        self.a2 = nn.Linear(d_in if key_source == "input" else hidden, rank, bias=False)
        self.a3 = nn.Linear(hidden, rank, bias=False)
        self.b = nn.Linear(rank, d_out, bias=False)
        nn.init.zeros_(self.b.weight)
        if key_source == "input":
            with torch.no_grad():
                self.a2.weight.copy_(self.a1.weight)

    def state(self, h: torch.Tensor, mask: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, R, R]``: the sum over unmasked tokens of ``(A2 k_t)(A3 h'_t)^T``; ``h [B, T, d]``, ``mask [B, T]``;
        the key ``k_t`` is ``h'_t`` or, with key source ``input``, the module's input ``x [B, T, d_in]`` (RMS
        normalised). With ``center`` set, ``h'`` is taken less its mean over the sequence's unmasked tokens."""
        m = mask[..., None].to(torch.float32)
        hn = self.norm(h)
        if self.center:
            hn = hn - (hn * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1)
        if self.key_norm is not None:
            if x is None:
                raise ConfigError("this generator keys tokens by its target modules' inputs; none were given")
            p = self.a2(self.key_norm(x)) * m
        else:
            p = self.a2(hn) * m
        q = self.a3(hn)
        out = torch.einsum("btr,bts->brs", p, q)
        if self.mean is not None:
            out = out - m.sum((1, 2))[:, None, None] * self.mean
        return out

    def frobenius_factors(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rank-R LoRA factors ``((S / |S|_F)^T A1 [B, R, d_in], B [B, d_out, R])`` of ``s [B, R, R]``."""
        s32 = s.float()
        n = s32.flatten(1).norm(dim=1).clamp(min=1e-12)[:, None, None]
        a = (s32 / n).transpose(-1, -2) @ self.a1.weight
        b = self.b.weight.expand(s32.shape[0], -1, -1)
        return a, b

    @staticmethod
    def basis(s: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The SVD normalisation of ``s [B, R, R]`` in state space: ``(U_r, V_r)``, each ``[B, R, r]`` (columns
        of a zero singular value, as in an empty context, are zero; U_r and the singular values come from the
        eigen-decomposition of ``S S^T``). ``U_r`` carries no gradient; ``V_r =
        S^T U_r / sigma`` keeps the state's."""
        s32 = s.float()
        with torch.no_grad():
            # U and sigma from the eigen-decomposition of S S^T (in float64): the same left singular vectors and
            # values as an SVD of S, at a third of its time for these sizes
            s64 = s32.double()
            lam, vecs = torch.linalg.eigh(s64 @ s64.transpose(-1, -2))      # ascending eigenvalues
            u = vecs.flip(-1)[..., :rank].float()
            sig = lam.flip(-1)[..., :rank].clamp(min=0).sqrt().float()
            live = (sig > sig[..., :1].clamp(min=1e-30) * 1e-6) & (sig > 0)
            inv = torch.where(live, 1.0 / sig.clamp(min=1e-30), torch.zeros_like(sig))
        v = s32.transpose(-1, -2) @ u * inv[..., None, :]           # [B, R, r] == V_r where s has rank >= r
        return u * live[..., None, :], v

    def basis_factors(self, u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """LoRA factors ``(U_r^T A1 [B, r, d_in], B V_r [B, d_out, r])`` of a ``basis``."""
        return u.transpose(-1, -2) @ self.a1.weight, self.b.weight @ v

    def factors(self, s: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """LoRA factors of the normalised state ``s [B, R, R]`` (``basis`` then ``basis_factors``). A zero
        state (an empty context) gives zero factors."""
        return self.basis_factors(*self.basis(s, rank))


class AdapterGenerator(nn.Module):
    """All target generators of one frozen LM."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.parts = nn.ModuleList(TargetGenerator(config.hidden, d_in, d_out, config.state_rank, config.key_source,
                                                   config.base_rank, config.mean_state, config.center)
                                   for d_in, d_out in config.shapes)

    @classmethod
    def for_lm(cls, lm, targets: list[str], *, state_rank: int = 64, svd_rank: int = 16, alpha: float = 64.0,
               norm: str = "svd", center: bool = False, key_source: str = "hidden", base_rank: int = 0,
               mean_state: bool = False, prompt_format: str = "plain", seed: int = 0) -> AdapterGenerator:
        """A fresh generator (B = 0) for ``targets`` of ``lm``, on its device, in float32."""
        layer_of = {name: i for i, name in enumerate(lm.target_modules("attn_out"))}
        layer_of.update({name: i for i, name in enumerate(lm.target_modules("mlp_out"))})
        layers = []
        for name in targets:
            layers.append(_layer_index(name, layer_of, lm.num_layers))
        config = GeneratorConfig(targets=list(targets), layers=layers,
                                 shapes=[list(lm.module_shape(n)) for n in targets], hidden=lm.hidden_size,
                                 state_rank=state_rank, svd_rank=svd_rank, alpha=alpha, norm=norm, center=center,
                                 key_source=key_source, base_rank=base_rank, mean_state=mean_state,
                                 base_model=lm.fingerprint, base_weights=lm.weights_digest,
                                 prompt_format=prompt_format)
        torch.manual_seed(seed)
        return cls(config).to(lm.device)

    @property
    def device(self) -> torch.device:
        return self.parts[0].a1.weight.device

    def states(self, hidden: list[torch.Tensor], mask: torch.Tensor,
               inputs: dict[str, torch.Tensor] | None = None) -> AdapterState:
        """The batch's states from the hidden states entering every decoder layer (``hidden[l]`` enters layer
        l, as ``FrozenLM.hidden_states`` returns them), the mask of context tokens and, for key source
        ``input``, each target module's input on the same tokens."""
        mats = {name: part.state(hidden[layer], mask, (inputs or {}).get(name))
                for name, layer, part in zip(self.config.targets, self.config.layers, self.parts)}
        return AdapterState(mats, int(mask.sum().item()))

    def bases(self, state: AdapterState) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per target, the SVD normalisation ``(U_r, V_r)`` of ``state`` (``TargetGenerator.basis``): all the
        delta needs of the state under norm ``svd``, so a document's can be kept and its delta made without an
        SVD. Shapes follow the state's (``[R, r]`` or ``[B, R, r]``)."""
        if self.config.norm != "svd":
            raise ConfigError(f"a generator with norm {self.config.norm!r} has no SVD basis")
        out = {}
        for name, part in zip(self.config.targets, self.parts):
            s = state.mats[name]
            u, v = part.basis(s[None] if s.dim() == 2 else s, self.config.svd_rank)
            out[name] = (u[0], v[0]) if s.dim() == 2 else (u, v)
        return out

    def delta(self, state: AdapterState | None = None, *,
              bases: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None) -> LowRankDelta:
        """The normalised delta of ``state`` (``[R, R]`` or ``[B, R, R]`` per target), or, under norm ``svd``,
        of a state's ``bases`` computed before (the same delta, without the SVD)."""
        if (state is None) == (bases is None):
            raise ConfigError("give a generator's delta either a state or its bases")
        if bases is not None and self.config.norm != "svd":
            raise ConfigError(f"a generator with norm {self.config.norm!r} makes its delta from states, not bases")
        factors = {}
        for name, part in zip(self.config.targets, self.parts):
            if bases is not None:
                u, v = bases[name]
                single = u.dim() == 2
                a, b = part.basis_factors(u[None] if single else u, v[None] if single else v)
            else:
                s = state.mats[name]
                single = s.dim() == 2
                batch = s[None] if single else s
                if self.config.norm == "frobenius":
                    a, b = part.frobenius_factors(batch)
                else:
                    a, b = part.factors(batch, self.config.svd_rank)
            if part.base_a is not None:
                n = a.shape[0]
                a = torch.cat([a, part.base_a.expand(n, -1, -1)], dim=1)
                b = torch.cat([b, part.base_b.expand(n, -1, -1)], dim=2)
            factors[name] = (a[0], b[0]) if single else (a, b)
        return LowRankDelta(factors, self.config.scale)

    def calibrate(self, states: list[AdapterState]) -> None:
        """Set each target's mean state M to the per-token mean of ``states`` (read with M = 0)."""
        if not self.config.mean_state:
            raise ConfigError("this generator keeps no mean state (option mean_state)")
        tokens = sum(s.tokens for s in states)
        with torch.no_grad():
            for name, part in zip(self.config.targets, self.parts):
                part.mean.copy_(sum(s.mats[name] for s in states) / max(1, tokens))

    def empty_state(self) -> AdapterState:
        return AdapterState.zeros(self.config.targets, self.config.state_rank, device=self.device)

    # ---- files ---------------------------------------------------------------------------------------------
    def save(self, directory: str | Path, extra: dict | None = None) -> Path:
        """Weights (safetensors) and generator.json (format, config, plus ``extra``: how it was trained, on which
        data, with which prompt format); see ``memkit.artifacts``."""
        return artifacts.save(directory, KIND, self.config, self, extra)

    @classmethod
    def load(cls, directory: str | Path, lm=None) -> AdapterGenerator:
        """A saved generator; with ``lm``, refuses one built for another base model. Every refusal is one line
        (``memkit.artifacts``)."""
        return artifacts.load(cls, GeneratorConfig, directory, KIND, lm)


def _layer_index(name: str, known: dict[str, int], num_layers: int) -> int:
    """The decoder layer a module belongs to: an output projection's own layer, else the number after the
    decoder list in its name."""
    if name in known:
        return known[name]
    for part in name.split("."):
        if part.isdigit() and int(part) < num_layers:
            return int(part)
    raise ConfigError(f"cannot tell which decoder layer module {name!r} belongs to")
