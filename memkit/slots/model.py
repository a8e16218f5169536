"""The memory-slot model (after CMT, built on MAC): a document becomes ``m`` memory vectors; a question finds
the best-matching memories by key (self-matching), aggregates the top-k of them with cross-attention, and the
frozen LM reads the result as a per-layer key/value prefix.

Trainable parts (the LM stays frozen):
  - ``slot_embeds [m, d]``: learnt input vectors read right after a text; the LM's last hidden states at them,
    through per-slot heads ``W_j [d, e]`` (plus a bias), are the text's ``m`` memory vectors ``[m, e]``.
    A text longer than ``max_tokens`` is never cut: it is read in consecutive token windows of at most
    ``max_tokens`` (as even as possible, nothing dropped), each window into its own group of ``m`` vectors, so a
    document's memory is ``[c, m, e]`` for its ``c`` windows (``read_groups``); a text that fits is one window,
    read as it always was.
  - ``key_head``: the mean of a text's memory vectors (over all its groups) -> a unit key ``[k]``. Documents and
    questions are read by the same machinery, so a question's key is trained (self-matching, a contrastive
    loss) to find its own document's key.
  - the aggregator: ``P`` learnt latents plus the question's own memory vectors attend, in ``blocks``
    cross-attention blocks, over the retrieved memories' vectors (with ``conditioning`` ``self``, each block
    first lets them attend over each other, so the latents read the memories as the question asks); each memory's matching score enters the
    attention logits as ``log softmax(scores / temperature)``, so better matches weigh more (with
    ``matching`` off, as in MAC, every memory enters with equal weight). A document read in ``c`` groups
    enters as ``c`` memories sharing its weight (each ``1/c`` of it), so a long document weighs as much as a
    short one.
  - ``prefix_head``: the ``P`` aggregated latents -> keys and values for every decoder layer (``Prefix``).

Owns: ``SlotConfig`` (saved beside the weights with the base model it belongs to), ``SlotModel`` (read, key,
aggregate, prefix), save/load through safetensors. Must not know storage, the CLI or training loops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import math
from typing import Sequence

import torch
from torch import nn

from memkit import artifacts
from memkit.errors import ConfigError
from memkit.hooks import LowRankDelta, Prefix
from memkit.lora import initial_a, resolve_targets
from memkit.train_config import SlotShape

CONFIG_FILE = "slots.json"
WEIGHTS_FILE = "slots.safetensors"
KIND = artifacts.ArtifactKind("slot model", CONFIG_FILE, WEIGHTS_FILE, "memkit train slots")



@dataclass
class SlotConfig(SlotShape):
    """A slot model's shape and the frozen LM it is built for; saved as slots.json beside its weights."""

    hidden: int = 0
    num_layers: int = 0
    num_kv_heads: int = 0
    head_dim: int = 0
    """The frozen LM's width and cache layout (set by ``for_lm``)."""
    reader_modules: list[str] = field(default_factory=list)
    reader_shapes: list[list[int]] = field(default_factory=list)
    """The modules the reading LoRA adapts (``reader_targets`` resolved) and their (d_in, d_out)."""
    base_model: str = ""
    """Fingerprint of the frozen LM the model was built for (architecture and tokenizer)."""
    base_weights: str = ""
    """Digest of that LM's weights: another checkpoint is refused too."""

    def validate(self) -> None:
        super().validate()
        if min(self.hidden, self.num_layers, self.num_kv_heads, self.head_dim) < 1:
            raise ConfigError("a slot model needs the LM's hidden size and cache layout (build it with for_lm)")
        if len(self.reader_modules) != len(self.reader_shapes) or bool(self.reader_rank) != bool(self.reader_modules):
            raise ConfigError("a slot model's reading LoRA needs one shape per module, and modules exactly when "
                              "reader_rank is above 0 (build it with for_lm)")


class _CrossBlock(nn.Module):
    """Latents attend over memory vectors (with an additive bias per memory), then a feed-forward layer; with
    ``self_attend``, the latents first attend over each other."""

    def __init__(self, dim: int, heads: int, self_attend: bool = False):
        super().__init__()
        self.heads = heads
        if self_attend:
            self.norm_s = nn.LayerNorm(dim)
            self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.self_attend = self_attend
        self.norm_q = nn.LayerNorm(dim)
        self.norm_m = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_f = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, latents: torch.Tensor, memory: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``latents [B, Q, e]``, ``memory [B, N, e]``, ``bias [B, N]`` (``-inf`` hides a position)."""
        if self.self_attend:
            x = self.norm_s(latents)
            latents = latents + self.self_attn(x, x, x, need_weights=False)[0]
        mask = bias[:, None, :].expand(-1, latents.shape[1], -1).repeat_interleave(self.heads, dim=0)
        m = self.norm_m(memory)
        out, _ = self.attn(self.norm_q(latents), m, m, attn_mask=mask, need_weights=False)
        latents = latents + out
        return latents + self.ff(self.norm_f(latents))


def reader_layer_indices(num_layers: int, count: int) -> list[int]:
    """The hidden-state layers (0 = embeddings, ``num_layers`` = last) a ``layers`` reader of ``count`` layers
    reads: evenly spaced, the last always among them (``count`` 0 or more than there are: all of them)."""
    total = num_layers + 1
    if count <= 0 or count >= total:
        return list(range(total))
    if count == 1:
        return [num_layers]
    return sorted({round(i * num_layers / (count - 1)) for i in range(count)})


class _LayerReader(nn.Module):
    """Learnt queries ``[m, e]`` attend over a text's hidden states at several layers: each layer's states are
    RMS-normalised (their scales differ by layer), projected to ``e`` by that layer's own map, and the tokens of
    every layer form one set of memory positions, padding hidden."""

    def __init__(self, hidden: int, layers: list[int], slots: int, dim: int, heads: int, blocks: int):
        super().__init__()
        self.layers = layers
        self.proj = nn.Parameter(torch.randn(len(layers), hidden, dim) / hidden ** 0.5)
        self.proj_bias = nn.Parameter(torch.zeros(len(layers), dim))
        self.queries = nn.Parameter(torch.randn(slots, dim) * 0.02)
        self.blocks = nn.ModuleList(_CrossBlock(dim, heads) for _ in range(blocks))

    def forward(self, hidden: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """``hidden``: per read layer ``[B, T, d]``; ``mask [B, T]`` (1: a token); returns ``[B, m, e]``."""
        feats = []
        for i, h in enumerate(hidden):
            h = h.float()
            h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)
            feats.append(h @ self.proj[i] + self.proj_bias[i])
        memory = torch.cat(feats, dim=1)                                    # [B, L*T, e]
        keep = mask.bool().repeat(1, len(hidden))
        bias = torch.zeros(keep.shape, device=memory.device).masked_fill(~keep, float("-inf"))
        q = self.queries[None].expand(memory.shape[0], -1, -1)
        for block in self.blocks:
            q = block(q, memory, bias)
        return q


class SlotModel(nn.Module):
    """The trainable parts of memory slots for one frozen LM."""

    def __init__(self, config: SlotConfig):
        super().__init__()
        config.validate()
        self.config = config
        c = config
        if c.reader == "slots":
            self.slot_embeds = nn.Parameter(torch.randn(c.slots, c.hidden) * 0.02)
            self.slot_heads = nn.Parameter(torch.randn(c.slots, c.hidden, c.mem_dim) / c.hidden ** 0.5)
            self.slot_bias = nn.Parameter(torch.zeros(c.slots, c.mem_dim))
        else:
            self.reader = _LayerReader(c.hidden, reader_layer_indices(c.num_layers, c.reader_layers), c.slots,
                                       c.mem_dim, c.heads, c.reader_blocks)
        self.key_head = nn.Linear(c.mem_dim, c.key_dim)
        self.latents = nn.Parameter(torch.randn(c.prefix_len, c.mem_dim) * 0.02)
        self.blocks = nn.ModuleList(_CrossBlock(c.mem_dim, c.heads, self_attend=c.conditioning == "self")
                                    for _ in range(c.blocks))
        self.out_norm = nn.LayerNorm(c.mem_dim)
        self.prefix_head = nn.Linear(c.mem_dim, c.num_layers * 2 * c.num_kv_heads * c.head_dim)
        nn.init.normal_(self.prefix_head.weight, std=0.02)
        nn.init.zeros_(self.prefix_head.bias)
        if c.reader == "slots":
            # the reading LoRA, drawn last from its own generator so that every other part starts as without
            # it: A as peft initialises it, B at zero (a fresh model reads as the LM alone)
            draw = torch.Generator().manual_seed(int(torch.initial_seed()) % 2**63)
            self.reader_a = nn.ParameterList(nn.Parameter(initial_a(c.reader_rank, d_in, draw))
                                             for d_in, _ in c.reader_shapes)
            self.reader_b = nn.ParameterList(nn.Parameter(torch.zeros(d_out, c.reader_rank))
                                             for _, d_out in c.reader_shapes)

    @classmethod
    def for_lm(cls, lm, *, seed: int = 0, **options) -> SlotModel:
        """A fresh slot model for ``lm``, on its device, in float32; ``options`` are ``SlotConfig`` fields."""
        known = {f for f in SlotConfig.__dataclass_fields__}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown slot model option {unknown[0]!r}")
        modules = []
        if options.get("reader_rank"):
            try:
                modules = resolve_targets(lm, options.get("reader_targets", "qv"))
            except ConfigError as err:
                raise ConfigError(f"slot model option reader_targets (--reader-targets): {err}") from None
        config = SlotConfig(**options, reader_modules=modules,
                            reader_shapes=[list(lm.module_shape(n)) for n in modules],
                            hidden=lm.hidden_size, num_layers=lm.num_layers,
                            num_kv_heads=lm.num_kv_heads, head_dim=lm.head_dim, base_model=lm.fingerprint,
                            base_weights=lm.weights_digest)
        torch.manual_seed(seed)
        return cls(config).to(lm.device)

    @property
    def device(self) -> torch.device:
        return self.latents.device

    # ---- reading ---------------------------------------------------------------------------------------------
    def window_tokens(self, lm) -> int:
        """Most tokens read into one group of slots: ``max_tokens``, within ``lm``'s context (less the slots
        the ``slots`` reader appends)."""
        appended = self.config.slots if self.config.reader == "slots" else 0
        return min(self.config.max_tokens, lm.max_context - appended)

    def windows(self, lm, text: str | Sequence[int]) -> list[list[int]]:
        """The token windows ``text`` (a string, or token ids read as given) is read in: its tokens cut into the
        fewest consecutive pieces of at most ``window_tokens`` (``bos_ids`` leading each piece of a string),
        as even as possible; every token is in exactly one. A text that fits is one window: ``bos_ids`` and its
        tokens, exactly what ``read`` reads."""
        lead = list(lm.bos_ids) if isinstance(text, str) else []
        ids = lm.encode(text) if isinstance(text, str) else [int(t) for t in text]
        width = self.window_tokens(lm) - len(lead)
        if width < 1:
            raise ConfigError(f"slot model option max_tokens ({self.config.max_tokens}) leaves no room for text "
                              f"beside {len(lead)} leading tokens and {self.config.slots} slots in a context of "
                              f"{lm.max_context}")
        if len(ids) <= width:
            return [lead + ids]
        count = math.ceil(len(ids) / width)
        size, extra = divmod(len(ids), count)
        out, start = [], 0
        for i in range(count):
            end = start + size + (i < extra)
            out.append(lead + ids[start:end])
            start = end
        return out

    def read(self, lm, texts) -> torch.Tensor:
        """Memory vectors ``[B, m, e]`` of ``texts`` (strings or token lists) that fit one window
        (``window_tokens``; a longer one is refused, never cut: read it with ``read_groups``); gradients flow
        to this model (through the LM for the ``slots`` reader; the ``layers`` reader reads the LM's states
        without gradients)."""
        limit = self.window_tokens(lm)
        if self.config.reader == "slots":
            hidden = lm.read_with_slots(texts, self.slot_embeds, max_length=limit, delta=self.reading_delta())
            return torch.einsum("bmd,mde->bme", hidden.float(), self.slot_heads) + self.slot_bias
        states, mask = lm.hidden_states(texts, layers=self.reader.layers, max_length=limit)
        if any(lm.last_truncated):
            raise ConfigError(f"a text is longer than the {limit} tokens read into slots at once; cut it into "
                              f"windows first (SlotModel.windows)")
        return self.reader(states, mask.to(states[0].device))

    def reading_delta(self) -> LowRankDelta | None:
        """The LoRA the LM reads texts into slots with (``reader_rank``; scaled by 2, i.e. alpha = 2 x rank as
        fine-tuning's default 16 / 8), or None."""
        c = self.config
        if not c.reader_rank:
            return None
        return LowRankDelta({n: (a, b) for n, a, b in zip(c.reader_modules, self.reader_a, self.reader_b)},
                            2.0)

    def read_groups(self, lm, texts, batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Every text read whole: ``[B, C, m, e]``, the memory vectors of each of its windows (``windows``; C
        the most windows of any text, zeros past a text's own), and ``[B, C]`` which groups are real. Windows
        are read ``batch_size`` at a time (default: all at once); gradients flow to this model."""
        if isinstance(texts, str):
            raise TypeError("pass a list of texts, not a single string")
        per_text = [self.windows(lm, t) for t in texts]
        flat = [w for ws in per_text for w in ws]
        size = batch_size or max(1, len(flat))
        read = torch.cat([self.read(lm, flat[i:i + size]) for i in range(0, len(flat), size)])
        c = max(len(ws) for ws in per_text)
        if c == 1:                                     # every text fits one window: nothing to place
            return read[:, None], torch.ones(len(per_text), 1, dtype=torch.bool, device=read.device)
        rows = torch.tensor([i for i, ws in enumerate(per_text) for _ in ws], device=read.device)
        cols = torch.tensor([j for ws in per_text for j in range(len(ws))], device=read.device)
        groups = read.new_zeros(len(per_text), c, *read.shape[1:])
        groups = groups.index_put((rows, cols), read)
        present = torch.zeros(len(per_text), c, dtype=torch.bool, device=read.device)
        present[rows, cols] = True
        return groups, present

    @staticmethod
    def pool(groups: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """``[B, m, e]``: each text's groups ``[B, C, m, e]`` averaged over its real ones (``present [B, C]``);
        a one-window text's vectors as they are. What a question's vectors are when it joins the aggregation."""
        w = present.to(groups.dtype)[..., None, None]
        return (groups * w).sum(1) / w.sum(1).clamp(min=1)

    def key(self, memory: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        """Unit keys ``[B, k]`` of memory vectors ``[B, m, e]``, or of groups ``[B, C, m, e]`` (``present [B, C]``
        which are real): the mean over every real vector."""
        if memory.dim() == 4:
            present = torch.ones(memory.shape[:2], dtype=torch.bool, device=memory.device) if present is None \
                else present
            w = present.to(memory.dtype)[..., None]
            pooled = (memory.mean(2) * w).sum(1) / w.sum(1).clamp(min=1)
        else:
            pooled = memory.mean(1)
        return nn.functional.normalize(self.key_head(pooled), dim=-1)

    @staticmethod
    def spread(groups: torch.Tensor, scores: torch.Tensor, present: torch.Tensor,
               group_present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Retrieved documents' groups ``[B, n, C, m, e]`` (with their scores ``[B, n]``, which are real
        ``[B, n]``, which groups are real ``[B, n, C]``) as ``aggregate`` takes them: memories ``[B, n*C, m, e]``,
        each with its document's score, whether it is real, and its document's group count."""
        b, n, c = group_present.shape
        memories = groups.reshape(b, n * c, *groups.shape[3:])
        real = (present[..., None] & group_present).reshape(b, n * c)
        counts = group_present.sum(-1, keepdim=True).clamp(min=1).expand(b, n, c).reshape(b, n * c)
        return memories, scores[..., None].expand(b, n, c).reshape(b, n * c), real, counts

    # ---- aggregating ------------------------------------------------------------------------------------------
    def aggregate(self, question: torch.Tensor, memories: torch.Tensor, scores: torch.Tensor,
                  present: torch.Tensor | None = None, counts: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, P, e]``: the latents after attending over the retrieved memories. ``question [B, m, e]`` (the
        question's own memory vectors, which join the latents), ``memories [B, n, m, e]`` (n retrieved per
        question), ``scores [B, n]`` their matching scores, ``present [B, n]`` which are real (a question may
        have fewer than n), ``counts [B, n]`` how many groups (windows) each memory's document was read into
        (default 1): each enters with ``1/count`` of its document's weight (``spread`` makes these of a long
        document's groups). The result does not depend on the order of the n memories."""
        b, n, m, e = memories.shape
        present = torch.ones(b, n, dtype=torch.bool, device=memories.device) if present is None else present
        hidden = torch.full_like(scores, float("-inf"))
        scores = scores if self.config.matching else torch.zeros_like(scores)
        logits = scores / self.config.temperature
        if counts is not None:
            logits = logits - counts.to(logits.dtype).clamp(min=1).log()
        log_w = torch.log_softmax(torch.where(present, logits, hidden), dim=-1)
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
        """Weights (safetensors) and slots.json (format, config, plus ``extra``: how it was trained, on which
        data, with which prompt format); see ``memkit.artifacts``."""
        return artifacts.save(directory, KIND, self.config, self, extra)

    @classmethod
    def load(cls, directory: str | Path, lm=None) -> SlotModel:
        """A saved slot model; with ``lm``, refuses one built for another base model. Every refusal is one line
        (``memkit.artifacts``)."""
        return artifacts.load(cls, SlotConfig, directory, KIND, lm)
