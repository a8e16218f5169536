"""Greedy generation through the frozen LM: ``FrozenLM.generate``.

Owns: deterministic greedy decoding with a KV cache, left padding and explicit position ids (so batched output
equals one-at-a-time output), prompts kept to their last tokens when too long (``last_truncated``), stop strings,
the count of generated tokens (``last_generated``), a low-rank delta or a key/value prefix applied per row. A
mixin of ``memkit.lm.FrozenLM``, whose loading, tokenising and padding it uses. Must not know storage, the CLI
or which memory method is calling.
"""

from __future__ import annotations

from typing import Sequence

import torch
from transformers import DynamicCache

from memkit.errors import ConfigError
from memkit.hooks import LowRankDelta, Prefix


class Generation:
    """``generate`` for ``FrozenLM``."""

    def generate(self, prompts: Sequence[str], *, max_new_tokens: int = 32, stop: list[str] | None = None,
                 delta: LowRankDelta | None = None, prefix: Prefix | None = None, batch_size: int = 8) -> list[str]:
        """Greedy continuations of ``prompts``; batched output equals one-at-a-time output. Generation ends at EOS
        or once every sequence has produced a ``stop`` string; texts are cut before their first stop string.
        Prompts too long for ``max_context - max_new_tokens`` (less the prefix) keep their last tokens;
        ``last_truncated`` records which, and ``last_generated`` how many tokens each sequence generated (the stop
        string's tokens included, EOS not)."""
        has_prefix = prefix is not None and prefix.length > 0
        plen = prefix.length if has_prefix else 0
        lead = [] if has_prefix else self._bos_ids
        keep = self.max_context - max_new_tokens - plen - len(lead)
        if max_new_tokens < 1 or keep < 1:
            raise ConfigError(f"max_new_tokens={max_new_tokens} leaves no room for a prompt in a context of "
                              f"{self.max_context} tokens (prefix {plen}); lower max_new_tokens")
        seqs, truncated = [], []
        for prompt in prompts:
            ids = self.encode(prompt)
            truncated.append(len(ids) > keep)
            ids = lead + ids[-keep:] if ids else lead
            seqs.append(ids or [self._filler_id])
        stops = [s for s in (stop or []) if s]
        outputs: list[str] = []
        generated: list[int] = []
        total, size = len(seqs), max(1, batch_size)
        if delta is not None:
            delta.rows(0, total, total)  # per-sequence factors must match the prompts before anything runs
        if has_prefix:
            prefix.rows(0, total, total)
        with torch.no_grad():
            for start in range(0, total, size):
                stop_at = min(start + size, total)
                part_delta = None if delta is None else delta.rows(start, stop_at, total)
                part_prefix = prefix.rows(start, stop_at, total) if has_prefix else None
                with self._delta(part_delta):
                    outputs.extend(self._generate_batch(seqs[start:stop_at], max_new_tokens, stops, part_prefix,
                                                        generated))
        self.last_truncated = truncated
        self.last_generated = generated
        return outputs

    def _generate_batch(self, seqs: list[list[int]], max_new_tokens: int, stops: list[str],
                        prefix: Prefix | None, counts: list[int]) -> list[str]:
        n = len(seqs)
        plen = prefix.length if prefix is not None else 0
        ids, mask = self._pad(seqs, left=True)
        positions = self._positions(mask, plen)
        attention = torch.cat([mask.new_ones(n, plen), mask], dim=1)
        cache = self.prefix_cache(prefix, n) if prefix is not None else DynamicCache(config=self.model.config)
        new_tokens: list[list[int]] = [[] for _ in range(n)]
        done = [False] * n
        last_only = dict(logits_to_keep=1) if self._keeps_logits else {}  # no [B, T, V] logits for the prompt
        for _ in range(max_new_tokens):
            out = self.model(input_ids=ids, attention_mask=attention, position_ids=positions,
                             use_cache=True, **{self._cache_arg: cache}, **last_only)
            cache = self._returned_cache(out)
            chosen = out.logits[:, -1, :].argmax(dim=-1).tolist()
            for i, token in enumerate(chosen):
                if done[i]:
                    continue
                if token in self._eos_ids:
                    done[i] = True
                    continue
                new_tokens[i].append(token)
                if stops and any(s in self.decode(new_tokens[i]) for s in stops):
                    done[i] = True
            if all(done):
                break
            fed = [self._pad_id if d else t for d, t in zip(done, chosen)]
            ids = torch.tensor(fed, dtype=torch.long, device=self.device)[:, None]
            positions = positions[:, -1:] + 1
            attention = torch.cat([attention, attention.new_ones(n, 1)], dim=1)
        counts.extend(len(toks) for toks in new_tokens)
        return [self._cut(self.decode(toks), stops) for toks in new_tokens]

    @staticmethod
    def _cut(text: str, stops: list[str]) -> str:
        cuts = [text.find(s) for s in stops if s in text]
        return text[:min(cuts)] if cuts else text
