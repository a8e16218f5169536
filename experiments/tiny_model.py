"""Tiny random causal LMs built locally from a config, for tests.

Owns: a small byte-level BPE tokenizer trained on a few sentences, and tiny
randomly initialised models of several Hugging Face families, saved with
``save_pretrained`` so they load through exactly the code path of any hub model.
Knows nothing of memkit's memory methods or storage. Nothing here downloads.

These models answer nothing meaningfully; they exist so that every code path can
run without a hub. The world LM (a trained model) is a different thing.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    MistralConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

FAMILIES = ("llama", "mistral", "qwen2", "gpt2", "gpt_neox")

SPECIAL = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}

_CORPUS = [
    "The lighthouse keeper Ada Varn lives in Port Elsin and works for the Harbour Trust.",
    "Question: Where does Ada Varn live? Answer: Port Elsin.",
    "Memory lets a frozen language model keep learning from new documents.",
    "In 2024 the council moved its archive to the old mill on the river.",
    "Numbers like 1, 2, 3, 10, 42 and 1999 appear in dates and counts.",
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,;:!?'\"()-",
]


def build_tokenizer(vocab_size: int = 384, corpus: list[str] | None = None) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer; any text (any bytes) can be encoded with it."""
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator((corpus or _CORPUS) * 4, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL)


def tiny_config(family: str, vocab_size: int, *, hidden: int = 32, layers: int = 2,
                heads: int = 4, max_positions: int = 256):
    """A config of ``family`` with hidden size ``hidden`` and ``layers`` decoder layers."""
    ids = dict(bos_token_id=0, eos_token_id=1, pad_token_id=2)
    if family in ("llama", "mistral", "qwen2"):
        cls = {"llama": LlamaConfig, "mistral": MistralConfig, "qwen2": Qwen2Config}[family]
        return cls(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                   num_hidden_layers=layers, num_attention_heads=heads,
                   num_key_value_heads=max(1, heads // 2), max_position_embeddings=max_positions,
                   tie_word_embeddings=False, **ids)
    if family == "gpt2":
        return GPT2Config(vocab_size=vocab_size, n_embd=hidden, n_layer=layers, n_head=heads,
                          n_positions=max_positions, **ids)
    if family == "gpt_neox":
        return GPTNeoXConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                             num_hidden_layers=layers, num_attention_heads=heads,
                             max_position_embeddings=max_positions, **ids)
    raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")


CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n"
                 "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
"""A chat template in the style of instruct models (role markers, each turn closed by the end-of-sequence token)."""


def build_tiny_model(family: str, out_dir: str | Path, *, seed: int = 0, max_positions: int = 256,
                     tokenizer: PreTrainedTokenizerFast | None = None, chat: bool = False) -> Path:
    """Build a tiny random ``family`` model and its tokenizer, saved to ``out_dir``; with ``chat``, the tokenizer
    carries ``CHAT_TEMPLATE``, as an instruct model's does (a given ``tokenizer`` is copied, never changed)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = tokenizer or build_tokenizer()
    if chat:
        tok = copy.deepcopy(tok)
        tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = tiny_config(family, len(tok), max_positions=max_positions)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
