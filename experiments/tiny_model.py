"""Tiny random causal LMs built locally from a config, for tests.

Owns: a small byte-level BPE tokenizer trained on a few sentences, and tiny
randomly initialised models of several Hugging Face families, saved with
``save_pretrained`` so they load through exactly the code path of any hub model,
and a tiny Llama written as a GGUF file (``write_tiny_gguf``).
Knows nothing of memkit's memory methods or storage. Nothing here downloads.

These models answer nothing meaningfully; they exist so that every code path can
run without a hub. The world LM (a trained model) is a different thing.
"""

from __future__ import annotations

import copy
import json
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


_GGUF_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
               "lm_head.weight": "output.weight"}
_GGUF_LAYER_NAMES = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
                     "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
                     "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                     "mlp.down_proj": "ffn_down"}


def _gguf_name(hf_name: str) -> str:
    """llama.cpp's name of a Llama weight (``model.layers.1.mlp.up_proj.weight``: ``blk.1.ffn_up.weight``)."""
    if hf_name in _GGUF_NAMES:
        return _GGUF_NAMES[hf_name]
    _, _, layer, rest = hf_name.split(".", 3)
    module, _, kind = rest.rpartition(".")
    return f"blk.{layer}.{_GGUF_LAYER_NAMES[module]}.{kind}"


def write_tiny_gguf(path: Path, *, seed: int = 0, vocab_size: int = 384, architecture: str = "llama") -> Path:
    """Write a tiny random Llama (hidden 32, 2 layers, 4 heads, 2 key/value heads, context 256) and the byte-level
    BPE tokenizer of ``build_tokenizer`` as a real GGUF file, as llama.cpp's converter would (float32, its tensor
    names, metadata keys and q/k layout); transformers reads it back with ``gguf_file=``. Its weights are those of
    ``build_tiny_model("llama", seed=seed)``. Another ``architecture`` names the same file so (for error tests)."""
    import gguf
    import numpy as np

    tok = build_tokenizer(vocab_size)
    torch.manual_seed(seed)
    config = tiny_config("llama", len(tok))
    model = AutoModelForCausalLM.from_config(config)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), architecture)
    w.add_name(f"memkit tiny llama s{seed}")
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_block_count(config.num_hidden_layers)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_head_count(config.num_attention_heads)
    w.add_head_count_kv(config.num_key_value_heads)
    w.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    w.add_layer_norm_rms_eps(config.rms_norm_eps)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    assert [i for _, i in vocab] == list(range(len(vocab)))
    special = set(tok.all_special_tokens)
    w.add_tokenizer_model("gpt2")
    w.add_token_list([t for t, _ in vocab])
    w.add_token_types([gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t, _ in vocab])
    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    w.add_bos_token_id(tok.bos_token_id)
    w.add_eos_token_id(tok.eos_token_id)
    w.add_pad_token_id(tok.pad_token_id)
    w.add_unk_token_id(tok.unk_token_id)
    w.add_add_bos_token(False)
    for name, tensor in model.state_dict().items():
        array = tensor.detach().numpy().astype(np.float32)
        heads = {"q_proj": config.num_attention_heads, "k_proj": config.num_key_value_heads}.get(name.split(".")[-2])
        if heads:  # llama.cpp's rotary layout (its converter's permute), which transformers undoes on reading
            array = array.reshape(heads, 2, -1, array.shape[1]).swapaxes(1, 2).reshape(array.shape)
        w.add_tensor(_gguf_name(name), np.ascontiguousarray(array))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_unsupported_gguf(path: Path, *, architecture: str = "memkitnet") -> Path:
    """A well-formed GGUF file whose ``general.architecture`` transformers cannot read."""
    return write_tiny_gguf(path, architecture=architecture)
