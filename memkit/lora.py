"""LoRA factors trained on the frozen LM's next-token loss, kept as separate tensors beside the model, never in it.

Owns: choosing the linear modules a LoRA targets (``resolve_targets``), ``LoraFactors`` (per module A ``[r, d_in]``
and B ``[d_out, r]`` with scale ``alpha / r``, initialised as peft initialises a LoRA: A Kaiming-uniform, B zero,
so a fresh LoRA changes nothing), cutting a text into training windows, the next-token loss of windows read
with the factors applied through ``FrozenLM``'s low-rank delta hook (``y = W x + (alpha/r) B A x``, peft's LoRA
maths), named numpy arrays for saving, and export as a peft adapter directory that
``peft.PeftModel.from_pretrained`` loads onto the base model with the same outputs.

Must not know: storage, the CLI, or which method trains the factors. It never wraps or changes the base model:
the factors reach it only inside ``FrozenLM.apply_delta`` (or the ``delta=`` of ``logits``/``generate``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers.pytorch_utils import Conv1D

from memkit.errors import ConfigError
from memkit.hooks import LowRankDelta

# Query and value projections by family: separate (llama, mistral, qwen2, opt, bert-like) or fused (gpt2's
# c_attn, gpt-neox/falcon/bloom's query_key_value, phi-3's qkv_proj), tried in this order.
_QV_SUFFIXES = (("q_proj", "v_proj"), ("query", "value"), ("c_attn",), ("query_key_value",), ("qkv_proj",),
                ("Wqkv",))


def resolve_targets(lm, spec: str) -> list[str]:
    """Full names of the linear modules a LoRA adapts.

    ``spec``: ``qv`` (attention query and value projections, or the fused QKV projection where a family has one),
    ``attn_out`` / ``mlp_out`` (the output projection of every decoder layer), or a comma-separated list of
    module name suffixes (``q_proj,k_proj,v_proj``).
    """
    names = list(lm.linear_modules())
    spec = spec.strip()
    if spec in ("attn_out", "mlp_out"):
        return lm.target_modules(spec)
    groups = _QV_SUFFIXES if spec == "qv" else (tuple(s.strip() for s in spec.split(",") if s.strip()),)
    for suffixes in groups:
        found = [n for n in names if any(n == s or n.endswith("." + s) for s in suffixes)]
        if found:
            return found
    suffixes = ", ".join(sorted({n.rsplit(".", 1)[-1] for n in names}))
    raise ConfigError(f"option targets={spec!r} matches no linear module of {lm.family} models; use qv, attn_out, "
                      f"mlp_out or module name suffixes such as {suffixes}")


def initial_a(rank: int, d_in: int, generator: torch.Generator) -> torch.Tensor:
    """A fresh LoRA ``A [rank, d_in]`` as torch and peft initialise ``lora_A`` (kaiming_uniform_ with a=sqrt(5):
    uniform in +-1/sqrt(d_in)); its ``B`` starts at zero, so a fresh LoRA changes nothing."""
    bound = 1.0 / math.sqrt(d_in)
    return (torch.rand(rank, d_in, generator=generator) * 2 - 1) * bound


class LoraFactors:
    """Trainable LoRA factors for ``targets`` of ``lm``: float32 tensors on the model's device."""

    def __init__(self, lm, targets: list[str], *, rank: int, alpha: float, seed: int = 0):
        self.lm = lm
        self.targets = list(targets)
        self.rank = rank
        self.alpha = float(alpha)
        gen = torch.Generator().manual_seed(seed)
        self.a: dict[str, torch.Tensor] = {}
        self.b: dict[str, torch.Tensor] = {}
        for name in self.targets:
            d_in, d_out = lm.module_shape(name)
            self.a[name] = initial_a(rank, d_in, gen).to(lm.device).requires_grad_(True)
            self.b[name] = torch.zeros(d_out, rank, device=lm.device).requires_grad_(True)

    @classmethod
    def from_delta(cls, lm, delta: LowRankDelta) -> LoraFactors:
        """The LoRA that computes ``delta`` (2-D factors of one rank across modules), e.g. to export it."""
        ranks = {a.shape[0] for a, _ in delta.factors.values()}
        if not delta.factors or len(ranks) != 1 or any(a.dim() != 2 for a, _ in delta.factors.values()):
            raise ConfigError("only a delta with 2-D factors of one rank across modules can become a LoRA")
        (rank,) = ranks
        out = cls.__new__(cls)
        out.lm, out.targets, out.rank = lm, list(delta.factors), int(rank)
        out.alpha = float(delta.scale) * out.rank
        out.a = {n: a.detach().float().to(lm.device).clone() for n, (a, _) in delta.factors.items()}
        out.b = {n: b.detach().float().to(lm.device).clone() for n, (_, b) in delta.factors.items()}
        return out

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def parameters(self) -> list[torch.Tensor]:
        """Every trainable tensor in a fixed order (A then B of each target, in target order)."""
        return [t for name in self.targets for t in (self.a[name], self.b[name])]

    def delta(self, *, detach: bool = False) -> LowRankDelta:
        pick = (lambda t: t.detach()) if detach else (lambda t: t)
        return LowRankDelta({n: (pick(self.a[n]), pick(self.b[n])) for n in self.targets}, self.scale)

    def is_zero(self) -> bool:
        return all(not bool(self.b[n].detach().any()) for n in self.targets)

    # ---- saving ---------------------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        """``{"<module>.lora_A": A, "<module>.lora_B": B}`` as float32 numpy arrays."""
        out = {}
        for n in self.targets:
            out[f"{n}.lora_A"] = self.a[n].detach().float().cpu().numpy()
            out[f"{n}.lora_B"] = self.b[n].detach().float().cpu().numpy()
        return out

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Copy factors saved by ``arrays`` in place; refuse ones made for other modules or another rank."""
        want = {f"{n}.lora_{x}" for n in self.targets for x in "AB"}
        have = {k for k in arrays if k.endswith((".lora_A", ".lora_B"))}
        if have != want:
            raise ConfigError("the saved LoRA targets other modules than this configuration (option targets); "
                              "answer with the options the store was built with, or build a new store")
        with torch.no_grad():
            for n in self.targets:
                for mine, key in ((self.a[n], f"{n}.lora_A"), (self.b[n], f"{n}.lora_B")):
                    value = torch.from_numpy(np.asarray(arrays[key], dtype=np.float32))
                    if tuple(value.shape) != tuple(mine.shape):
                        raise ConfigError(f"the saved LoRA factor {key} has shape {list(value.shape)}, not "
                                          f"{list(mine.shape)} (option rank); use the store's own options")
                    mine.copy_(value.to(mine.device))

    # ---- peft export ----------------------------------------------------------------------------------
    def peft_config(self):
        """The ``peft.LoraConfig`` whose adapter computes exactly these factors' delta."""
        from peft import LoraConfig

        modules = self.lm.linear_modules()
        return LoraConfig(r=self.rank, lora_alpha=self.alpha, target_modules=list(self.targets), lora_dropout=0.0,
                          bias="none", task_type="CAUSAL_LM", base_model_name_or_path=self.lm.name,
                          fan_in_fan_out=any(isinstance(modules[n], Conv1D) for n in self.targets))

    def peft_state_dict(self) -> dict[str, torch.Tensor]:
        """The factors under the names a saved peft adapter uses (``base_model.model.<module>.lora_A.weight``)."""
        out = {}
        for n in self.targets:
            out[f"base_model.model.{n}.lora_A.weight"] = self.a[n].detach().float().cpu().contiguous()
            out[f"base_model.model.{n}.lora_B.weight"] = self.b[n].detach().float().cpu().contiguous()
        return out

    def export_peft(self, directory: str | Path) -> Path:
        """Write a peft adapter directory (``adapter_config.json`` and ``adapter_model.safetensors``)."""
        from safetensors.torch import save_file

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.peft_config().save_pretrained(str(out))
        save_file(self.peft_state_dict(), str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
        (out / "memkit_lora.json").write_text(json.dumps({"targets": self.targets, "rank": self.rank,
                                                          "alpha": self.alpha, "base_model": self.lm.name}, indent=2))
        return out


def windows(lm, text: str, max_tokens: int) -> list[list[int]]:
    """Token windows of ``text`` for training: ``bos_ids`` then up to ``max_tokens - len(bos_ids)`` text tokens
    each, consecutive and not overlapping (a long document is read in several windows); windows with nothing to
    predict are dropped."""
    lead = lm.bos_ids
    body = max(1, min(max_tokens, lm.max_context) - len(lead))
    ids = lm.encode(text)
    out = [lead + ids[i:i + body] for i in range(0, len(ids), body)]
    return [w for w in out if len(w) >= 2]


def next_token_loss(lm, seqs: list[list[int]], delta: LowRankDelta | None) -> torch.Tensor:
    """Mean next-token cross-entropy over every predicted token of ``seqs`` (token lists used as given)."""
    width = max(len(s) for s in seqs)
    keep = torch.zeros(len(seqs), width, dtype=torch.bool)
    for i, s in enumerate(seqs):
        keep[i, : len(s) - 1] = True
    logits, _ = lm.logits(seqs, delta=delta, keep=keep)
    target = torch.tensor([int(t) for s in seqs for t in s[1:]], device=logits.device)
    return F.cross_entropy(logits.float(), target)
