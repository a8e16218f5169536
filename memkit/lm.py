"""The frozen language model every memory method reads through.

Owns: loading any Hugging Face causal LM and its tokenizer (by reference name, GGUF file, local directory or hub
id: ``memkit.loading.resolve_model``; device, dtype or a device_map spreading it over devices; no network when a
local copy is named), freezing it (``requires_grad=False`` on every weight, eval mode),
a fingerprint of its config and vocabulary, tokenising, hidden states and pooled embeddings, logits,
greedy generation (``memkit.generation``, a mixin), and gradient checkpointing through its layers while training
what reads through it (``recomputing``). Memory reaches the model only through the two hook points of
``memkit.hooks``: a low-rank delta on named linear modules and a per-layer key/value prefix.

Must not know: storage, SQL, FAISS, the CLI, or which memory method is calling. It never changes a base weight.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from contextlib import contextmanager, nullcontext
from typing import Iterator, Sequence

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

from memkit.errors import ConfigError, MemkitError
from memkit.hooks import (
    LowRankDelta,
    Prefix,
    build_prefix_cache,
    decoder_layers,
    delta_hooks,
    layer_devices,
    linear_modules,
    module_device,
    module_shape,
    target_module_names,
)
from memkit.generation import Generation
from memkit.loading import load_pretrained, resolve_device, resolve_dtype, resolve_model
from memkit.recompute import recomputing

__all__ = ["FrozenLM", "LowRankDelta", "Prefix", "load_pretrained", "resolve_device", "resolve_dtype"]

# Config keys that say how a model was saved or is run, not what it computes.
_VOLATILE_CONFIG_KEYS = frozenset({
    "transformers_version", "_name_or_path", "name_or_path", "torch_dtype", "dtype", "_commit_hash",
    "use_cache", "output_hidden_states", "output_attentions", "return_dict", "torchscript",
})

# Tokenizers without a real limit report a huge model_max_length; anything above this is not a limit.
_SANE_MAX_LENGTH = 10_000_000
_FALLBACK_CONTEXT = 2048

WEIGHTS_DIGEST_PREFIX = "bf16:"
"""Marks ``FrozenLM.weights_digest``'s current version (values rounded to bfloat16); unmarked digests are the
earlier dtype-dependent one (``legacy_weights_digest``)."""


def _clean_config(obj):
    if isinstance(obj, dict):
        out = {k: _clean_config(v) for k, v in obj.items()
               if k not in _VOLATILE_CONFIG_KEYS and not str(k).startswith("_")}
        if isinstance(out.get("architectures"), list):
            out["architectures"] = sorted(out["architectures"])
        return out
    if isinstance(obj, (list, tuple)):
        return [_clean_config(v) for v in obj]
    return obj


def _offloaded_tensor(model, name: str) -> torch.Tensor:
    """A state tensor a ``device_map`` offloaded (left on the ``meta`` device), read from accelerate's offload map;
    one ``ConfigError`` line when it cannot be read."""
    try:
        from transformers.integrations.accelerate import load_offloaded_parameter

        tensor = load_offloaded_parameter(model, name)
        if tensor is None or tensor.device.type == "meta":
            raise ValueError("not in the offload map")
        return tensor
    except Exception:  # no hook, another hook layout, a missing file: all the same refusal
        raise ConfigError(f"the model's weight {name} is on the meta device: the device_map offloaded it and memkit "
                          f"cannot read it there; give a device_map that puts every module on a GPU or the CPU "
                          f"(no offload)") from None


class FrozenLM(Generation):
    """A Hugging Face causal LM and its tokenizer, frozen; see the module docstring."""

    @classmethod
    def load(cls, name_or_path: str, *, revision: str | None = None, device: str = "auto", dtype: str = "auto",
             trust_remote_code: bool = False, device_map: str | dict | None = None) -> FrozenLM:
        """Load a reference model by short name, a GGUF file (dequantized once, then read from memkit's cache), a
        local directory (never touching the network) or a hub id (cache first, then the hub). ``device_map`` (e.g.
        ``auto``: a model larger than one device, spread over the GPUs and the CPU) is handed to
        ``from_pretrained``, which places the weights; ``device`` then only chooses the ``auto`` dtype, and inputs
        go where the input embeddings are."""
        dev = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, dev)
        source = resolve_model(name_or_path)
        if revision and source.digest:
            raise ConfigError(f"--revision names a hub revision; {name_or_path} is a GGUF model, whose content is "
                              f"its version: drop --revision")
        model, tokenizer = load_pretrained(AutoModelForCausalLM, AutoTokenizer, source.load_from, revision=revision,
                                           dtype=torch_dtype, trust_remote_code=trust_remote_code,
                                           device_map=device_map)
        if device_map is None:
            model.to(dev)
        return cls(model, tokenizer, name=source.name, revision=revision, digest=source.digest)

    def __init__(self, model, tokenizer, *, name: str, revision: str | None = None, digest: str | None = None):
        """``digest``: the fingerprint of a model made from a GGUF file (its content hash), which then stands for
        the config-and-vocabulary fingerprint."""
        self.model = model
        self.tokenizer = tokenizer
        self._name = name
        self._revision = revision
        model.requires_grad_(False)
        model.eval()
        if tokenizer.pad_token_id is None and tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._config = model.config.get_text_config(decoder=True)
        self._eos_ids = self._collect_eos_ids()
        self._bos_ids = self._probe_lead_tokens()
        forward = inspect.signature(model.forward).parameters
        self._keeps_logits = "logits_to_keep" in forward
        # transformers 5.x renamed the forward's cache argument (and the output's field) from past_key_values to
        # cache and warns on the old name; older versions and families know only past_key_values.
        self._cache_arg = "cache" if "cache" in forward else "past_key_values"
        self._linears: dict[str, torch.nn.Module] | None = None
        self._fingerprint: str | None = digest
        self.last_truncated: list[bool] = []
        self.last_generated: list[int] = []

    # ------------------------------------------------------------------ properties

    @property
    def name(self) -> str:
        return self._name

    @property
    def revision(self) -> str | None:
        return self._revision

    @property
    def device(self) -> torch.device:
        """Where inputs go: the input embeddings' device (the model's, unless a ``device_map`` spread it; where
        they run, when it offloaded them)."""
        return module_device(self.model.get_input_embeddings(), torch.device("cpu"))

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def family(self) -> str:
        return str(self.model.config.model_type)

    @property
    def hidden_size(self) -> int:
        return int(self._config.hidden_size)

    @property
    def num_layers(self) -> int:
        return int(self._config.num_hidden_layers)

    @property
    def num_heads(self) -> int:
        return int(self._config.num_attention_heads)

    @property
    def num_kv_heads(self) -> int:
        return int(getattr(self._config, "num_key_value_heads", None) or self.num_heads)

    @property
    def head_dim(self) -> int:
        return int(getattr(self._config, "head_dim", None) or self.hidden_size // self.num_heads)

    @property
    def max_context(self) -> int:
        """Longest sequence the model takes: its position limit, capped by a sane tokenizer limit."""
        n = getattr(self._config, "max_position_embeddings", None) or getattr(self._config, "n_positions", None)
        t = getattr(self.tokenizer, "model_max_length", None)
        sane = isinstance(t, int) and 0 < t < _SANE_MAX_LENGTH
        if n:
            return int(min(n, t)) if sane else int(n)
        return int(t) if sane else _FALLBACK_CONTEXT

    @property
    def vocab_size(self) -> int:
        return int(getattr(self._config, "vocab_size", None) or len(self.tokenizer))

    @property
    def bos_ids(self) -> list[int]:
        """Tokens the tokenizer puts before a text (``[<s>]`` for Llama, ``[]`` for GPT-2); added to string inputs."""
        return list(self._bos_ids)

    @property
    def default_embed_layer(self) -> int:
        return max(1, round(0.75 * self.num_layers))

    @property
    def fingerprint(self) -> str:
        """sha256 of the model config (less how it was saved or is run), the tokenizer vocabulary, its special
        tokens and the tokens it puts before a text. Not a hash of the weights: two checkpoints of one
        architecture and tokenizer share it. A model made from a GGUF file is fingerprinted by the file's
        content instead (``gguf-sha256:<hex>``)."""
        if self._fingerprint is None:
            config = _clean_config(self.model.config.to_dict())
            vocab = sorted(self.tokenizer.get_vocab().items())
            special = sorted((k, str(v)) for k, v in self.tokenizer.special_tokens_map.items())
            payload = json.dumps({"config": config, "vocab": vocab, "special": special, "bos": self._bos_ids},
                                 sort_keys=True, default=str)
            self._fingerprint = hashlib.sha256(payload.encode("utf-8")).hexdigest()
        return self._fingerprint

    @property
    def weights_digest(self) -> str:
        """``bf16:`` and the sha256 over every state tensor's name, shape and an evenly strided sample of up to
        65,536 of its values, floating values rounded to bfloat16 first: tells two checkpoints of one architecture
        apart (what ``fingerprint`` does not) in a moment, even for large models, and is the same whether the
        weights were saved or loaded in float32 or bfloat16 (rounding float32 to bfloat16 is what loading in
        bfloat16 does). Weights a ``device_map`` offloaded are read through accelerate's offload map. For
        artifacts trained against these exact weights (generators, slot models)."""
        if getattr(self, "_weights_digest", None) is None:
            self._weights_digest = WEIGHTS_DIGEST_PREFIX + self._digest(legacy=False)
        return self._weights_digest

    @property
    def legacy_weights_digest(self) -> str:
        """The unversioned digest of earlier memkits (float32 samples of the values as loaded, so it depends on
        the dtype); only to accept artifacts saved with it."""
        if getattr(self, "_legacy_weights_digest", None) is None:
            self._legacy_weights_digest = self._digest(legacy=True)
        return self._legacy_weights_digest

    def weights_match(self, digest: str) -> bool:
        """Whether ``digest`` (an artifact's ``base_weights``, either version) is these weights'."""
        if ":" in digest:  # a versioned digest: this version's, or one this memkit cannot compute
            return digest == self.weights_digest
        return digest == self.legacy_weights_digest

    def _digest(self, *, legacy: bool) -> str:
        h = hashlib.sha256()
        for name, p in sorted(self.model.state_dict().items()):
            if p.device.type == "meta":
                p = _offloaded_tensor(self.model, name)
            flat = p.detach().reshape(-1)
            step = max(1, flat.numel() // 65536)
            sample = flat[::step][:65536]
            if legacy:
                sample = sample.float()
            elif sample.is_floating_point():
                sample = sample.to(torch.bfloat16).contiguous().view(torch.int16)
            elif sample.dtype != torch.bool:
                sample = sample.to(torch.int64)
            h.update(f"{name}:{list(p.shape)}".encode())
            h.update(sample.cpu().numpy().tobytes())
        return h.hexdigest()

    # ------------------------------------------------------------------ text

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, no special tokens added."""
        return list(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def decode(self, ids, *, skip_special_tokens: bool = True) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    # ------------------------------------------------------------------ states

    def hidden_states(self, texts: Sequence[str | Sequence[int]], *, layers: list[int] | None = None,
                      max_length: int | None = None,
                      delta: LowRankDelta | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Hidden states ``[B, T, d]`` per requested layer (0 = embeddings, ``num_layers`` = last, after the
        final norm), and the attention mask ``[B, T]`` (right padding). Strings get ``bos_ids`` in front; token
        lists are used as given. Sequences longer than ``max_length`` (at most ``max_context``) keep their first
        tokens; ``last_truncated`` records which were cut. With ``delta``, the text is read with it applied.
        Never tracks gradients."""
        seqs = self._sequences(texts, lead=True)
        limit = self.max_context if max_length is None else max(1, min(max_length, self.max_context))
        self.last_truncated = [len(s) > limit for s in seqs]
        with self._delta(delta):
            return self._states([s[:limit] for s in seqs], layers)

    def read_with_slots(self, texts: Sequence[str | Sequence[int]], slots: torch.Tensor, *,
                        max_length: int | None = None, delta: LowRankDelta | None = None) -> torch.Tensor:
        """The last layer's hidden states (after the final norm) ``[B, m, d]`` at ``m`` learnt input vectors
        ``slots [m, d]`` read right after each text (left padding puts them at the same positions in every row).
        Every text is read whole: one longer than ``max_length`` tokens (``bos_ids`` included; at most
        ``max_context - m``) is refused with a ``ConfigError``, never cut, so a caller cuts long texts into
        windows first (``SlotModel.windows``). With ``delta``, the text and slots are read with it applied.
        Gradients flow to ``slots`` and ``delta`` (and to anything else trainable) when the caller has grad
        enabled; the LM's own weights stay frozen."""
        m = int(slots.shape[0])
        limit = self.max_context - m if max_length is None else min(max_length, self.max_context - m)
        if limit < 1:
            raise ConfigError(f"{m} slots leave no room for text in a context of {self.max_context} tokens")
        seqs = self._sequences(texts, lead=True)
        longest = max(len(s) for s in seqs)
        if longest > limit:
            raise ConfigError(f"a text of {longest} tokens is longer than the {limit} read into slots at once; cut "
                              f"it into windows first (SlotModel.windows)")
        ids, mask = self._pad(seqs, left=True)
        table = self.model.get_input_embeddings()
        embeds = torch.cat([table(ids), slots.to(table.weight.dtype)[None].expand(len(seqs), -1, -1)], dim=1)
        mask = torch.cat([mask, mask.new_ones(len(seqs), m)], dim=1)
        backbone = getattr(self.model, "base_model", self.model)
        with self._delta(delta):
            out = backbone(inputs_embeds=embeds, attention_mask=mask, position_ids=self._positions(mask, 0),
                           output_hidden_states=True, use_cache=False)
        return out.hidden_states[-1][:, -m:]

    def embed(self, texts: Sequence[str], *, layer: int | None = None, batch_size: int = 16) -> np.ndarray:
        """``[B, d]`` float32, L2-normalised mean of ``layer``'s hidden states over each text's tokens. Texts longer
        than the context are read in windows whose means are averaged, weighted by tokens."""
        layer = self.default_embed_layer if layer is None else layer
        self._layer_indices([layer])
        width = self.max_context - len(self._bos_ids)
        windows: list[tuple[int, list[int], int]] = []  # (text index, ids, leading positions not pooled)
        for i, text in enumerate(texts):
            ids = self.encode(text)
            if not ids:
                windows.append((i, self._bos_ids or [self._filler_id], 0))
            for start in range(0, len(ids), width):
                windows.append((i, self._bos_ids + ids[start:start + width], len(self._bos_ids)))
        sums = np.zeros((len(texts), self.hidden_size), dtype=np.float64)
        counts = np.zeros(len(texts), dtype=np.float64)
        order = sorted(range(len(windows)), key=lambda j: len(windows[j][1]))
        size = max(1, batch_size)
        for start in range(0, len(order), size):
            chunk = [windows[j] for j in order[start:start + size]]
            (h,), mask = self._states([w[1] for w in chunk], [layer])
            mask = mask.clone()
            for row, (_, _, skip) in enumerate(chunk):
                mask[row, :skip] = 0
            pooled = (h.float() * mask[..., None].float()).sum(1).cpu().numpy()
            tokens = mask.sum(1).cpu().numpy()
            for row, (i, _, _) in enumerate(chunk):
                sums[i] += pooled[row]
                counts[i] += tokens[row]
        means = sums / np.maximum(counts, 1.0)[:, None]
        norms = np.linalg.norm(means, axis=1, keepdims=True)
        return (means / np.maximum(norms, 1e-12)).astype(np.float32)

    def logits(self, texts: Sequence[str | Sequence[int]], *, delta: LowRankDelta | None = None,
               prefix: Prefix | None = None, keep: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[B, T, V]`` (model dtype) at every text position and the mask ``[B, T]`` (right padding).
        With a prefix, the text is its continuation (no ``bos_ids`` added) and starts at position ``P``.
        ``keep`` (bool ``[B, T]``, ``T`` the longest text): only the logits at its True positions, flattened to
        ``[N, V]`` in row-major order; the output projection then runs on those positions alone (with a vocabulary
        of 262K, it costs more than the rest of a small model). Gradients flow to trainable delta factors or prefix
        tensors when the caller has grad enabled."""
        has_prefix = prefix is not None and prefix.length > 0
        plen = prefix.length if has_prefix else 0
        seqs = self._sequences(texts, lead=not has_prefix)
        longest = max(len(s) for s in seqs)
        if longest + plen > self.max_context:
            raise MemkitError(f"a text of {longest} tokens (plus a prefix of {plen}) exceeds the model's context "
                              f"of {self.max_context} tokens; split it first")
        ids, mask = self._pad(seqs, left=False)
        attention = mask
        if has_prefix:
            kwargs = {self._cache_arg: self.prefix_cache(prefix, len(seqs)), "use_cache": True}
            attention = torch.cat([mask.new_ones(len(seqs), plen), mask], dim=1)
        else:
            kwargs = dict(use_cache=False)
        if keep is not None:
            if keep.dtype != torch.bool or tuple(keep.shape) != tuple(ids.shape):
                raise ValueError(f"keep must be a bool mask of shape {tuple(ids.shape)}")
            keep = keep.to(ids.device)
            if self._keeps_logits:
                kwargs["logits_to_keep"] = keep
        with self._delta(delta):
            out = self.model(input_ids=ids, attention_mask=attention, position_ids=self._positions(mask, plen),
                             **kwargs)
        logits = out.logits
        if keep is not None and logits.dim() == 3:      # a model without logits_to_keep computed them all
            logits = logits[keep]
        return logits, mask

    # ------------------------------------------------------------------ hook points

    def linear_modules(self) -> dict[str, torch.nn.Module]:
        """Targetable linears (``nn.Linear`` and ``Conv1D``) by full module name."""
        if self._linears is None:
            self._linears = linear_modules(self.model)
        return dict(self._linears)

    def target_modules(self, kind: str = "attn_out") -> list[str]:
        """Names of the attention (``attn_out``) or MLP (``mlp_out``) output projection of every decoder layer."""
        return target_module_names(self.model, self.num_layers, kind)

    def module_shape(self, name: str) -> tuple[int, int]:
        """``(d_in, d_out)`` of the named linear module."""
        modules = self.linear_modules()
        if name not in modules:
            raise ConfigError(f"{name!r} is not a linear module of this model")
        return module_shape(modules[name])

    @contextmanager
    def apply_delta(self, delta: LowRankDelta) -> Iterator[None]:
        """Add ``delta`` to its modules' outputs inside the context; base weights are never touched."""
        with delta_hooks(self.linear_modules(), delta):
            yield

    @contextmanager
    def recomputing(self) -> Iterator[None]:
        """Gradient checkpointing while open: each decoder layer's activations are recomputed in the backward pass
        instead of kept (less memory for about one more forward pass), with the model still in eval mode (no
        dropout) and deltas and prefixes read exactly as without it (``memkit.recompute``)."""
        with recomputing(decoder_layers(self.model, self.num_layers)[1]):
            yield

    def prefix_cache(self, prefix: Prefix, batch_size: int) -> DynamicCache:
        """A fresh transformers ``DynamicCache`` holding ``prefix``, expanded to ``batch_size``; each layer's keys
        and values on the device that layer runs on (a ``device_map`` may spread the layers)."""
        return build_prefix_cache(prefix, batch_size, config=self.model.config, num_layers=self.num_layers,
                                  num_kv_heads=self.num_kv_heads, head_dim=self.head_dim,
                                  device=layer_devices(self.model, self.num_layers, fallback=self.device),
                                  dtype=self.dtype)

    def prefix_from_text(self, text: str) -> Prefix:
        """The key/value cache of reading ``text`` (with ``bos_ids``), as a ``Prefix`` of batch 1."""
        seq = self._bos_ids + self.encode(text)
        if not seq:
            raise MemkitError("cannot build a prefix from an empty text")
        if len(seq) > self.max_context:
            raise MemkitError(f"a text of {len(seq)} tokens exceeds the model's context of {self.max_context}")
        ids = torch.tensor([seq], dtype=torch.long, device=self.device)
        cache = DynamicCache(config=self.model.config)
        with torch.no_grad():
            out = self.model(input_ids=ids, use_cache=True, **{self._cache_arg: cache})
        return Prefix.from_cache(self._returned_cache(out))

    # ------------------------------------------------------------------ internals

    def _delta(self, delta: LowRankDelta | None):
        return nullcontext() if delta is None else self.apply_delta(delta)

    def _returned_cache(self, out):
        """The cache a forward returned, read by the name this model's transformers uses (``cache`` in 5.x,
        ``past_key_values`` before; reading the old name on 5.x warns)."""
        if self._cache_arg == "cache":
            cache = out.get("cache") if hasattr(out, "get") else getattr(out, "cache", None)
            if cache is not None:
                return cache
        return out.past_key_values

    def _sequences(self, texts: Sequence[str | Sequence[int]], *, lead: bool) -> list[list[int]]:
        if isinstance(texts, str):
            raise TypeError("pass a list of texts, not a single string")
        if len(texts) == 0:
            raise MemkitError("no texts given")
        seqs = []
        for text in texts:
            if isinstance(text, str):
                seq = (self._bos_ids if lead else []) + self.encode(text)
            else:
                seq = [int(t) for t in text]
            if not seq:
                raise MemkitError("cannot run the model on an empty text")
            seqs.append(seq)
        return seqs

    def _states(self, seqs: list[list[int]], layers: list[int] | None) -> tuple[list[torch.Tensor], torch.Tensor]:
        idx = self._layer_indices(layers)
        ids, mask = self._pad(seqs, left=False)
        backbone = getattr(self.model, "base_model", self.model)
        with torch.no_grad():
            out = backbone(input_ids=ids, attention_mask=mask, position_ids=self._positions(mask, 0),
                           output_hidden_states=True, use_cache=False)
        return [out.hidden_states[i] for i in idx], mask

    def _layer_indices(self, layers: list[int] | None) -> list[int]:
        n = self.num_layers
        if layers is None:
            return list(range(n + 1))
        idx = []
        for layer in layers:
            if not -(n + 1) <= layer <= n:
                raise ConfigError(f"layer {layer} is out of range; this model has layers 0..{n} (0 = embeddings)")
            idx.append(layer % (n + 1))
        return idx

    def _pad(self, seqs: list[list[int]], *, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            span = slice(width - len(s), width) if left else slice(0, len(s))
            ids[i, span] = torch.tensor(s, dtype=torch.long)
            mask[i, span] = 1
        return ids.to(self.device), mask.to(self.device)

    @staticmethod
    def _positions(mask: torch.Tensor, offset: int) -> torch.Tensor:
        """Position of each token: its index among the real tokens of its row, after ``offset`` prefix slots."""
        return (mask.cumsum(dim=-1) - 1).clamp(min=0) + offset

    @property
    def _filler_id(self) -> int:
        """A token to read when a text is empty and the tokenizer adds nothing in front."""
        for tid in (self.tokenizer.bos_token_id, self.tokenizer.eos_token_id, self._pad_id):
            if tid is not None:
                return int(tid)
        return 0

    def _collect_eos_ids(self) -> set[int]:
        found: set[int] = set()
        gen = getattr(self.model, "generation_config", None)
        for source in (self.tokenizer.eos_token_id, getattr(gen, "eos_token_id", None),
                       getattr(self._config, "eos_token_id", None)):
            if isinstance(source, int):
                found.add(source)
            elif isinstance(source, (list, tuple)):
                found.update(int(t) for t in source)
        return found

    def _probe_lead_tokens(self) -> list[int]:
        probe = "memkit probe"
        plain = list(self.tokenizer(probe, add_special_tokens=False)["input_ids"])
        full = list(self.tokenizer(probe, add_special_tokens=True)["input_ids"])
        for i in range(len(full) - len(plain) + 1):
            if full[i:i + len(plain)] == plain:
                return full[:i]
        return []
