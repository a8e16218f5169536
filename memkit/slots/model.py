"""The memory-slot model (after CMT, built on MAC): a document becomes ``m`` memory vectors; a question finds
the best-matching memories by key (self-matching), aggregates the top-k of them with cross-attention, and the
frozen LM reads the result as a per-layer key/value prefix.

Trainable parts (the LM stays frozen):
  - ``slot_embeds [m, d]``: learnt input vectors read right after a text; the LM's last hidden states at them,
    through per-slot heads ``W_j [d, e]`` (plus a bias), are the text's ``m`` memory vectors ``[m, e]``.
  - ``key_head``: the mean of a text's memory vectors -> a unit key ``[k]``. Documents and questions are read by
    the same machinery, so a question's key is trained (self-matching, a contrastive loss) to find its own
    document's key.
  - the aggregator: ``P`` learnt latents plus the question's own memory vectors attend, in ``blocks``
    cross-attention blocks, over the retrieved memories' vectors; each memory's matching score enters the
    attention logits as ``log softmax(scores / temperature)``, so better matches weigh more (with
    ``matching`` off, as in MAC, every memory enters with equal weight).
  - ``prefix_head``: the ``P`` aggregated latents -> keys and values for every decoder layer (``Prefix``).

Owns: ``SlotConfig`` (saved beside the weights with the base model it belongs to), ``SlotModel`` (read, key,
aggregate, prefix), save/load through safetensors. Must not know storage, the CLI or training loops.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from memkit.errors import ConfigError
from memkit.hooks import Prefix

CONFIG_FILE = "slots.json"
WEIGHTS_FILE = "slots.safetensors"


@dataclass
class SlotShape:
    """The sizes and switches a slot model is built with (a training run chooses them)."""

    slots: int = 8
    """m: memory vectors per document (MAC used 24 for documents of a few hundred tokens)."""
    mem_dim: int = 256
    """e: size of a memory vector."""
    key_dim: int = 128
    """Size of the matching key."""
    prefix_len: int = 8
    """P: prefix positions the LM reads (the aggregator's latents)."""
    blocks: int = 2
    """Cross-attention blocks of the aggregator."""
    heads: int = 4
    """Attention heads of each block (must divide mem_dim)."""
    temperature: float = 0.05
    """Matching scores become attention weights as softmax(score / temperature)."""
    max_tokens: int = 256
    """Longest text read into slots (longer ones keep their last tokens)."""
    matching: bool = True
    """Whether the keys were trained to match (self-matching) and the matching scores weigh the memories in the
    aggregation; without it (MAC) every memory enters with equal weight and attention alone decides."""

    def shape(self) -> dict:
        """These fields as a dict (the options ``SlotModel.for_lm`` takes)."""
        return {f.name: getattr(self, f.name) for f in fields(SlotShape)}

    def validate(self) -> None:
        for name in ("slots", "mem_dim", "key_dim", "prefix_len", "blocks", "heads", "max_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"slot model option {name} must be at least 1")
        if self.mem_dim % self.heads:
            raise ConfigError(f"slot model option heads ({self.heads}) must divide mem_dim ({self.mem_dim})")
        if self.temperature <= 0:
            raise ConfigError("slot model option temperature must be above 0")


@dataclass
class SlotConfig(SlotShape):
    """A slot model's shape and the frozen LM it is built for; saved as slots.json beside its weights."""

    hidden: int = 0
    num_layers: int = 0
    num_kv_heads: int = 0
    head_dim: int = 0
    """The frozen LM's width and cache layout (set by ``for_lm``)."""
    base_model: str = ""
    """Fingerprint of the frozen LM the model was built for (architecture and tokenizer)."""
    base_weights: str = ""
    """Digest of that LM's weights: another checkpoint is refused too."""

    def validate(self) -> None:
        super().validate()
        if min(self.hidden, self.num_layers, self.num_kv_heads, self.head_dim) < 1:
            raise ConfigError("a slot model needs the LM's hidden size and cache layout (build it with for_lm)")


class _CrossBlock(nn.Module):
    """Latents attend over memory vectors (with an additive bias per memory), then a feed-forward layer."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm_q = nn.LayerNorm(dim)
        self.norm_m = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_f = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, latents: torch.Tensor, memory: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``latents [B, Q, e]``, ``memory [B, N, e]``, ``bias [B, N]`` (``-inf`` hides a position)."""
        mask = bias[:, None, :].expand(-1, latents.shape[1], -1).repeat_interleave(self.heads, dim=0)
        m = self.norm_m(memory)
        out, _ = self.attn(self.norm_q(latents), m, m, attn_mask=mask, need_weights=False)
        latents = latents + out
        return latents + self.ff(self.norm_f(latents))


class SlotModel(nn.Module):
    """The trainable parts of memory slots for one frozen LM."""

    def __init__(self, config: SlotConfig):
        super().__init__()
        config.validate()
        self.config = config
        c = config
        self.slot_embeds = nn.Parameter(torch.randn(c.slots, c.hidden) * 0.02)
        self.slot_heads = nn.Parameter(torch.randn(c.slots, c.hidden, c.mem_dim) / c.hidden ** 0.5)
        self.slot_bias = nn.Parameter(torch.zeros(c.slots, c.mem_dim))
        self.key_head = nn.Linear(c.mem_dim, c.key_dim)
        self.latents = nn.Parameter(torch.randn(c.prefix_len, c.mem_dim) * 0.02)
        self.blocks = nn.ModuleList(_CrossBlock(c.mem_dim, c.heads) for _ in range(c.blocks))
        self.out_norm = nn.LayerNorm(c.mem_dim)
        self.prefix_head = nn.Linear(c.mem_dim, c.num_layers * 2 * c.num_kv_heads * c.head_dim)
        nn.init.normal_(self.prefix_head.weight, std=0.02)
        nn.init.zeros_(self.prefix_head.bias)

    @classmethod
    def for_lm(cls, lm, *, seed: int = 0, **options) -> SlotModel:
        """A fresh slot model for ``lm``, on its device, in float32; ``options`` are ``SlotConfig`` fields."""
        known = {f for f in SlotConfig.__dataclass_fields__}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown slot model option {unknown[0]!r}")
        config = SlotConfig(**options, hidden=lm.hidden_size, num_layers=lm.num_layers,
                            num_kv_heads=lm.num_kv_heads, head_dim=lm.head_dim, base_model=lm.fingerprint,
                            base_weights=lm.weights_digest)
        torch.manual_seed(seed)
        return cls(config).to(lm.device)

    @property
    def device(self) -> torch.device:
        return self.slot_embeds.device

    # ---- reading ---------------------------------------------------------------------------------------------
    def read(self, lm, texts) -> torch.Tensor:
        """Memory vectors ``[B, m, e]`` of ``texts`` (strings or token lists); gradients flow to this model."""
        hidden = lm.read_with_slots(texts, self.slot_embeds, max_length=self.config.max_tokens)
        return torch.einsum("bmd,mde->bme", hidden.float(), self.slot_heads) + self.slot_bias

    def key(self, memory: torch.Tensor) -> torch.Tensor:
        """Unit keys ``[B, k]`` of memory vectors ``[B, m, e]``."""
        return nn.functional.normalize(self.key_head(memory.mean(1)), dim=-1)

    # ---- aggregating ------------------------------------------------------------------------------------------
    def aggregate(self, question: torch.Tensor, memories: torch.Tensor, scores: torch.Tensor,
                  present: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, P, e]``: the latents after attending over the retrieved memories. ``question [B, m, e]`` (the
        question's own memory vectors, which join the latents), ``memories [B, n, m, e]`` (n retrieved per
        question), ``scores [B, n]`` their matching scores, ``present [B, n]`` which are real (a question may
        have fewer than n). The result does not depend on the order of the n memories."""
        b, n, m, e = memories.shape
        present = torch.ones(b, n, dtype=torch.bool, device=memories.device) if present is None else present
        hidden = torch.full_like(scores, float("-inf"))
        scores = scores if self.config.matching else torch.zeros_like(scores)
        log_w = torch.log_softmax(torch.where(present, scores / self.config.temperature, hidden), dim=-1)
        log_w = torch.where(present, log_w, hidden)
        # the question's own vectors join as one more memory, seen only when nothing was retrieved (so that
        # every row attends to something)
        alone = torch.where(present.any(-1, keepdim=True), float("-inf"), 0.0).to(log_w.dtype)
        log_w = torch.cat([log_w, alone], dim=1)
        flat = torch.cat([memories, question[:, None]], dim=1).reshape(b, (n + 1) * m, e)
        bias = log_w[..., None].expand(-1, -1, m).reshape(b, (n + 1) * m)
        latents = torch.cat([self.latents[None].expand(b, -1, -1), question], dim=1)
        for block in self.blocks:
            latents = block(latents, flat, bias)
        return self.out_norm(latents[:, : self.config.prefix_len])

    def prefix(self, aggregated: torch.Tensor) -> Prefix:
        """The per-layer key/value prefix ``[B, n_kv, P, head_dim]`` of aggregated latents ``[B, P, e]``."""
        c = self.config
        b, p, _ = aggregated.shape
        kv = self.prefix_head(aggregated).view(b, p, c.num_layers, 2, c.num_kv_heads, c.head_dim)
        kv = kv.permute(2, 3, 0, 4, 1, 5)              # [layers, 2, B, n_kv, P, head_dim]
        return Prefix(keys=[kv[i, 0] for i in range(c.num_layers)], values=[kv[i, 1] for i in range(c.num_layers)])

    # ---- files ---------------------------------------------------------------------------------------------
    def save(self, directory: str | Path, extra: dict | None = None) -> Path:
        """Weights (safetensors) and slots.json (config plus ``extra``, e.g. how it was trained)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, str(out / WEIGHTS_FILE))
        (out / CONFIG_FILE).write_text(json.dumps({"config": asdict(self.config), **(extra or {})}, indent=2) + "\n")
        return out

    @classmethod
    def load(cls, directory: str | Path, lm=None) -> SlotModel:
        """A saved slot model; with ``lm``, refuses one built for another base model."""
        src = Path(directory)
        if not (src / CONFIG_FILE).is_file() or not (src / WEIGHTS_FILE).is_file():
            raise ConfigError(f"{src} holds no slot model ({CONFIG_FILE} and {WEIGHTS_FILE}); train one with "
                              "`memkit train slots`")
        config = SlotConfig(**json.loads((src / CONFIG_FILE).read_text())["config"])
        if lm is not None and ((config.base_model and config.base_model != lm.fingerprint)
                               or (config.base_weights and config.base_weights != lm.weights_digest)):
            raise ConfigError(f"the slot model in {src} was trained for another base model; train one for it")
        model = cls(config)
        model.load_state_dict(load_file(str(src / WEIGHTS_FILE)))
        return model.to(lm.device) if lm is not None else model
