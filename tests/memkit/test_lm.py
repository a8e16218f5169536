"""FrozenLM on tiny random models of every family: loading, freezing, states, generation and the two hook points."""

from __future__ import annotations

import copy
import shutil

import numpy as np
import pytest
import torch
from torch.testing import assert_close
from transformers.pytorch_utils import Conv1D

from experiments.tiny_model import FAMILIES, build_tiny_model
from memkit.errors import ConfigError, MemkitError, ModelLoadError
from memkit.lm import FrozenLM, LowRankDelta, Prefix, resolve_dtype

PROMPTS = ["The lighthouse keeper", "Question: Where does Ada Varn live? Answer:", "x",
           "In 2024 the council moved its archive to the old mill"]
TEXT, CONT = "The lighthouse keeper Ada", " Varn lives in Port Elsin."


@pytest.fixture(scope="module")
def lms(tiny_model_dir):
    cache: dict[str, FrozenLM] = {}

    def get(family: str) -> FrozenLM:
        if family not in cache:
            cache[family] = FrozenLM.load(str(tiny_model_dir(family)), device="cpu", dtype="float32")
        return cache[family]

    return get


@pytest.fixture(scope="module")
def bos_lm(tmp_path_factory):
    """A llama whose tokenizer puts <s> before every text, as real Llama tokenizers do."""
    from tokenizers.processors import TemplateProcessing

    from experiments.tiny_model import build_tokenizer

    tok = build_tokenizer()
    tok.backend_tokenizer.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    out = build_tiny_model("llama", tmp_path_factory.mktemp("bos") / "llama", tokenizer=tok)
    return FrozenLM.load(str(out), device="cpu", dtype="float32")


def random_delta(lm: FrozenLM, names: list[str], rank: int = 3, scale: float = 0.5, seed: int = 0) -> LowRankDelta:
    gen = torch.Generator().manual_seed(seed)
    factors = {}
    for name in names:
        d_in, d_out = lm.module_shape(name)
        factors[name] = (torch.randn(rank, d_in, generator=gen) * 0.3, torch.randn(d_out, rank, generator=gen) * 0.3)
    return LowRankDelta(factors=factors, scale=scale)


# ---------------------------------------------------------------- loading and properties

@pytest.mark.parametrize("family", FAMILIES)
def test_load_by_path_is_frozen(lms, tiny_model_dir, family):
    lm = lms(family)
    assert lm.family == family
    assert lm.name == str(tiny_model_dir(family).resolve())
    assert lm.device == torch.device("cpu") and lm.dtype == torch.float32
    params = list(lm.model.parameters())
    assert params and not any(p.requires_grad for p in params)
    assert not lm.model.training
    assert (lm.hidden_size, lm.num_layers, lm.head_dim, lm.max_context, lm.vocab_size) == (32, 2, 8, 256, 384)
    assert lm.num_kv_heads == (4 if family in ("gpt2", "gpt_neox") else 2)
    assert lm.bos_ids == []


def test_text_helpers(tiny_lm):
    ids = tiny_lm.encode("Ada Varn lives in Port Elsin.")
    assert ids and all(isinstance(i, int) for i in ids)
    assert tiny_lm.decode(ids) == "Ada Varn lives in Port Elsin."
    assert tiny_lm.count_tokens("Ada Varn lives in Port Elsin.") == len(ids)
    assert tiny_lm.encode("") == []


def test_fingerprint_stable_and_discriminating(lms, tiny_model_dir, tmp_path, bos_lm):
    path = tiny_model_dir("llama")
    again = FrozenLM.load(str(path), device="cpu")
    assert again.fingerprint == lms("llama").fingerprint
    moved = shutil.copytree(path, tmp_path / "elsewhere")
    assert FrozenLM.load(str(moved), dtype="bfloat16").fingerprint == again.fingerprint
    others = {lms(f).fingerprint for f in FAMILIES} | {bos_lm.fingerprint}
    assert len(others) == len(FAMILIES) + 1
    shorter = FrozenLM.load(str(tiny_model_dir("llama", max_positions=128)))
    assert shorter.fingerprint != again.fingerprint


@pytest.mark.parametrize("where", ["/nonexistent/model", "./no-such-model", "~/no-such-model-here", "a/b/c"])
def test_missing_directory_is_a_model_load_error(where):
    with pytest.raises(ModelLoadError, match="no model directory at"):
        FrozenLM.load(where)


def test_file_and_empty_directory_are_model_load_errors(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match="is a file"):
        FrozenLM.load(str(tmp_path / "weights.bin"))
    with pytest.raises(ModelLoadError, match="could not load"):
        FrozenLM.load(str(tmp_path))


def test_hub_id_offline_points_to_a_local_directory(monkeypatch, tmp_path):
    import huggingface_hub.constants as hub_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelLoadError) as info:
        FrozenLM.load("memkit-tests/no-such-model")
    message = str(info.value)
    assert "\n" not in message
    assert "local directory" in message and "hf download memkit-tests/no-such-model" in message


def test_dtype_and_device_validation(tiny_model_dir):
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("float16", torch.device("cpu")) == torch.float16
    with pytest.raises(ConfigError, match="dtype"):
        FrozenLM.load(str(tiny_model_dir("llama")), dtype="float64")
    with pytest.raises(ConfigError, match="device"):
        FrozenLM.load(str(tiny_model_dir("llama")), device="warp-drive")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device"):
            FrozenLM.load(str(tiny_model_dir("llama")), device="cuda")
    lm = FrozenLM.load(str(tiny_model_dir("llama")), dtype="bfloat16")
    assert lm.dtype == torch.bfloat16


# ---------------------------------------------------------------- states

@pytest.mark.parametrize("family", FAMILIES)
def test_hidden_states_shapes(lms, family):
    lm = lms(family)
    texts = ["Ada Varn lives in Port Elsin.", "Memory"]
    states, mask = lm.hidden_states(texts)
    lengths = [lm.count_tokens(t) for t in texts]
    assert len(states) == lm.num_layers + 1
    assert all(s.shape == (2, max(lengths), lm.hidden_size) for s in states)
    assert mask.sum(1).tolist() == lengths and mask[1, : lengths[1]].all()
    assert not any(s.requires_grad for s in states)
    (last,), _ = lm.hidden_states(texts, layers=[-1])
    assert torch.equal(last, states[-1])
    (first,), mask = lm.hidden_states(texts, layers=[0], max_length=3)
    assert first.shape[1] == 3 and lm.last_truncated == [True, lengths[1] > 3]


def test_hidden_states_bad_layer(tiny_lm):
    with pytest.raises(ConfigError, match="layer"):
        tiny_lm.hidden_states(["a"], layers=[tiny_lm.num_layers + 1])


@pytest.mark.parametrize("family", FAMILIES)
def test_embed_normalised_and_deterministic(lms, family):
    lm = lms(family)
    texts = ["Ada Varn lives in Port Elsin.", "Memory lets a frozen model learn.", ""]
    a, b = lm.embed(texts), lm.embed(texts)
    assert a.shape == (3, lm.hidden_size) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(a, b)
    alone = lm.embed(texts[1:2])
    np.testing.assert_allclose(alone[0], a[1], atol=1e-5)


def test_embed_is_the_normalised_mean_of_a_layer(tiny_lm):
    text = "Ada Varn lives in Port Elsin."
    (h,), _ = tiny_lm.hidden_states([text], layers=[1])
    mean = h[0].mean(0)
    np.testing.assert_allclose(tiny_lm.embed([text], layer=1)[0], (mean / mean.norm()).numpy(), atol=1e-5)


def test_embed_reads_long_text_in_windows(tiny_lm):
    long = " ".join(["The lighthouse keeper Ada Varn lives in Port Elsin."] * 60)
    n = tiny_lm.count_tokens(long)
    assert n > 3 * tiny_lm.max_context
    vec = tiny_lm.embed([long, "short"], batch_size=2)
    assert np.isfinite(vec).all()
    np.testing.assert_allclose(np.linalg.norm(vec, axis=1), 1.0, rtol=1e-5)
    # the token-weighted mean of the window means, windows read one at a time
    ids = tiny_lm.encode(long)
    width = tiny_lm.max_context
    total = torch.zeros(tiny_lm.hidden_size)
    for start in range(0, n, width):
        (h,), _ = tiny_lm.hidden_states([ids[start:start + width]], layers=[tiny_lm.default_embed_layer])
        total += h[0].sum(0)
    expect = total / n
    np.testing.assert_allclose(vec[0], (expect / expect.norm()).numpy(), atol=1e-5)


def test_bos_tokenizer_is_prepended_and_not_pooled(bos_lm):
    assert bos_lm.bos_ids == [0]
    _, mask = bos_lm.hidden_states(["Ada"])
    assert mask.shape[1] == 1 + bos_lm.count_tokens("Ada")
    (h,), _ = bos_lm.hidden_states(["Ada Varn"], layers=[2])
    mean = h[0, 1:].mean(0)
    np.testing.assert_allclose(bos_lm.embed(["Ada Varn"], layer=2)[0], (mean / mean.norm()).numpy(), atol=1e-5)


# ---------------------------------------------------------------- generation

@pytest.mark.parametrize("family", FAMILIES)
def test_generate_deterministic_and_batch_independent(lms, family):
    lm = lms(family)
    batched = lm.generate(PROMPTS, max_new_tokens=12, batch_size=8)
    assert batched == lm.generate(PROMPTS, max_new_tokens=12, batch_size=8)
    assert batched == lm.generate(PROMPTS, max_new_tokens=12, batch_size=1)
    assert batched == [lm.generate([p], max_new_tokens=12)[0] for p in PROMPTS]
    assert lm.last_truncated == [False]
    assert all(isinstance(t, str) for t in batched)


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox"])
def test_generate_cuts_at_stop_strings(lms, family):
    lm = lms(family)
    full = lm.generate(PROMPTS[:2], max_new_tokens=16)
    ascii_chars = [c for c in full[0][2:] if c.isascii() and c.isalnum()]
    assert ascii_chars, full
    stop = ascii_chars[0]
    cut = lm.generate(PROMPTS[:2], max_new_tokens=16, stop=[stop, "\u2603never"])
    assert cut[0] == full[0][: full[0].index(stop)]
    assert cut[1] == (full[1][: full[1].index(stop)] if stop in full[1] else full[1])


def test_generate_left_truncates_long_prompts(tiny_lm):
    long = " ".join(["Ada Varn lives in Port Elsin."] * 80)
    assert tiny_lm.count_tokens(long) > tiny_lm.max_context
    out = tiny_lm.generate([long, "short"], max_new_tokens=8)
    assert len(out) == 2 and tiny_lm.last_truncated == [True, False]
    with pytest.raises(ConfigError, match="max_new_tokens"):
        tiny_lm.generate(["a"], max_new_tokens=tiny_lm.max_context)


# ---------------------------------------------------------------- low-rank deltas

def merged_copy(lm: FrozenLM, delta: LowRankDelta) -> FrozenLM:
    model = copy.deepcopy(lm.model)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, (a, b) in delta.factors.items():
            update = delta.scale * (b @ a)  # [d_out, d_in]
            module = modules[name]
            module.weight += update.T if isinstance(module, Conv1D) else update
    return FrozenLM(model, lm.tokenizer, name="merged")


@pytest.mark.parametrize("family", FAMILIES)
def test_delta_equals_merged_weights(lms, family):
    lm = lms(family)
    names = lm.target_modules("attn_out") + lm.target_modules("mlp_out")
    delta = random_delta(lm, names)
    base, _ = lm.logits(PROMPTS)
    with torch.no_grad():
        hooked, mask = lm.logits(PROMPTS, delta=delta)
    merged, _ = merged_copy(lm, delta).logits(PROMPTS)
    assert not torch.allclose(hooked, base)
    assert_close(hooked * mask[..., None], merged * mask[..., None], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_zero_delta_changes_nothing(lms, family):
    lm = lms(family)
    delta = random_delta(lm, lm.target_modules())
    for name, (a, b) in delta.factors.items():
        delta.factors[name] = (a, torch.zeros_like(b))
    base, _ = lm.logits(PROMPTS)
    with lm.apply_delta(delta):
        zero, _ = lm.logits(PROMPTS)
    assert_close(zero, base, atol=0, rtol=0)


def test_hooks_are_removed_even_after_an_exception(tiny_lm):
    delta = random_delta(tiny_lm, tiny_lm.target_modules())
    base, _ = tiny_lm.logits(PROMPTS)
    modules = tiny_lm.linear_modules()
    with tiny_lm.apply_delta(delta):
        assert all(modules[n]._forward_hooks for n in delta.factors)
    assert not any(m._forward_hooks for m in modules.values())
    with pytest.raises(RuntimeError, match="boom"):
        with tiny_lm.apply_delta(delta):
            raise RuntimeError("boom")
    assert not any(m._forward_hooks for m in modules.values())
    assert torch.equal(tiny_lm.logits(PROMPTS)[0], base)


def test_nested_deltas_add(tiny_lm):
    names = tiny_lm.target_modules()
    one, two = random_delta(tiny_lm, names, seed=1), random_delta(tiny_lm, names, seed=2)
    stacked = LowRankDelta({n: (torch.cat([one.factors[n][0], two.factors[n][0]]),
                                torch.cat([one.factors[n][1], two.factors[n][1]], dim=1)) for n in names}, scale=0.5)
    with tiny_lm.apply_delta(one), tiny_lm.apply_delta(two):
        nested, _ = tiny_lm.logits(PROMPTS)
    assert_close(nested, tiny_lm.logits(PROMPTS, delta=stacked)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_per_sequence_factors(lms, family):
    lm = lms(family)
    names = lm.target_modules()
    one, two = random_delta(lm, names, seed=1), random_delta(lm, names, seed=2)
    both = LowRankDelta({n: (torch.stack([one.factors[n][0], two.factors[n][0]]),
                             torch.stack([one.factors[n][1], two.factors[n][1]])) for n in names}, scale=0.5)
    texts = PROMPTS[:2]
    logits, mask = lm.logits(texts, delta=both)
    for row, single in enumerate((one, two)):
        alone, _ = lm.logits([texts[row]], delta=single)
        n = int(mask[row].sum())
        assert_close(logits[row, :n], alone[0], atol=1e-5, rtol=1e-5)


def test_bad_deltas_are_config_errors(tiny_lm):
    name = tiny_lm.target_modules()[0]
    d_in, d_out = tiny_lm.module_shape(name)
    with pytest.raises(ConfigError, match="not a linear module"):
        with tiny_lm.apply_delta(LowRankDelta({"model.nope": (torch.zeros(1, d_in), torch.zeros(d_out, 1))})):
            pass
    with pytest.raises(ConfigError, match="expected A"):
        with tiny_lm.apply_delta(LowRankDelta({name: (torch.zeros(1, d_in + 1), torch.zeros(d_out, 1))})):
            pass
    with pytest.raises(ConfigError, match="kind"):
        tiny_lm.target_modules("embeddings")


def test_module_shapes_handle_conv1d(lms):
    gpt2 = lms("gpt2")
    assert isinstance(gpt2.linear_modules()["transformer.h.0.attn.c_attn"], Conv1D)
    assert gpt2.module_shape("transformer.h.0.attn.c_attn") == (32, 96)
    assert gpt2.module_shape("transformer.h.0.mlp.c_fc") == (32, 128)
    assert lms("llama").module_shape("model.layers.0.mlp.down_proj") == (64, 32)


# ---------------------------------------------------------------- prefixes

@pytest.mark.parametrize("family", FAMILIES)
def test_prefix_of_a_text_equals_reading_the_text(lms, family):
    lm = lms(family)
    assert lm.encode(TEXT) + lm.encode(CONT) == lm.encode(TEXT + CONT)
    prefix = lm.prefix_from_text(TEXT)
    assert prefix.length == lm.count_tokens(TEXT)
    assert prefix.keys[0].shape == (1, lm.num_kv_heads, prefix.length, lm.head_dim)
    with_prefix, _ = lm.logits([CONT], prefix=prefix)
    full, _ = lm.logits([TEXT + CONT])
    n = lm.count_tokens(CONT)
    assert_close(with_prefix[0], full[0, -n:], atol=1e-5, rtol=1e-5)
    # a batch of continuations of different lengths shares the prefix
    batch, mask = lm.logits([CONT, " Varn"], prefix=prefix)
    assert_close(batch[0], with_prefix[0], atol=1e-5, rtol=1e-5)
    short, _ = lm.logits([TEXT + " Varn"])
    m = int(mask[1].sum())
    assert_close(batch[1, :m], short[0, -m:], atol=1e-5, rtol=1e-5)
    # greedy generation reads the prefix like the text itself
    assert lm.generate([CONT, " Varn"], prefix=prefix, max_new_tokens=10) == \
        lm.generate([TEXT + CONT, TEXT + " Varn"], max_new_tokens=10)


def test_prefix_with_a_bos_tokenizer(bos_lm):
    prefix = bos_lm.prefix_from_text(TEXT)
    assert prefix.length == 1 + bos_lm.count_tokens(TEXT)
    with_prefix, _ = bos_lm.logits([CONT], prefix=prefix)
    full, _ = bos_lm.logits([TEXT + CONT])
    n = bos_lm.count_tokens(CONT)
    assert_close(with_prefix[0], full[0, -n:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_generate_with_per_sequence_prefixes_and_deltas(lms, family):
    lm = lms(family)
    gen = torch.Generator().manual_seed(3)
    shape = (3, lm.num_kv_heads, 4, lm.head_dim)
    prefix = Prefix([torch.randn(shape, generator=gen) for _ in range(lm.num_layers)],
                    [torch.randn(shape, generator=gen) for _ in range(lm.num_layers)])
    names = lm.target_modules()
    deltas = [random_delta(lm, names, seed=s) for s in range(3)]
    delta = LowRankDelta({n: (torch.stack([d.factors[n][0] for d in deltas]),
                              torch.stack([d.factors[n][1] for d in deltas])) for n in names}, scale=0.5)
    prompts = PROMPTS[:3]
    together = lm.generate(prompts, prefix=prefix, delta=delta, batch_size=2, max_new_tokens=8)
    alone = [lm.generate([p], prefix=prefix.rows(i, i + 1, 3), delta=deltas[i], max_new_tokens=8)[0]
             for i, p in enumerate(prompts)]
    assert together == alone
    with pytest.raises(ConfigError, match="batch"):
        lm.generate(prompts[:2], prefix=prefix)


def test_bad_prefix_is_a_config_error(tiny_lm):
    prefix = tiny_lm.prefix_from_text(TEXT)
    with pytest.raises(ConfigError, match="layers"):
        tiny_lm.prefix_cache(Prefix(prefix.keys[:1], prefix.values[:1]), 1)
    wrong = Prefix([k[:, :1] for k in prefix.keys], prefix.values)
    with pytest.raises(ConfigError, match="shape"):
        tiny_lm.prefix_cache(wrong, 1)
    assert tiny_lm.prefix_cache(prefix, 3).get_seq_length() == prefix.length


# ---------------------------------------------------------------- training leaves the base untouched

def snapshot(lm: FrozenLM) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in lm.model.state_dict().items()}


def assert_unchanged(lm: FrozenLM, before: dict[str, torch.Tensor]) -> None:
    after = lm.model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in lm.model.parameters())


def lm_loss(logits: torch.Tensor, mask: torch.Tensor, ids: list[list[int]]) -> torch.Tensor:
    targets = torch.full(mask.shape, -100, dtype=torch.long)
    for i, seq in enumerate(ids):
        targets[i, : len(seq) - 1] = torch.tensor(seq[1:])
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_training_a_delta_leaves_the_base_bit_identical(lms, family):
    lm = lms(family)
    before = snapshot(lm)
    delta = random_delta(lm, lm.target_modules())
    params = [t.requires_grad_() for pair in delta.factors.values() for t in pair]
    start = [p.detach().clone() for p in params]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    ids = [lm.encode(t) for t in PROMPTS]
    logits, mask = lm.logits(ids, delta=delta)
    lm_loss(logits, mask, ids).backward()
    optimizer.step()
    assert all(not torch.equal(p, s) for p, s in zip(params, start))
    assert_unchanged(lm, before)


@pytest.mark.parametrize("family", ["llama", "gpt_neox"])
def test_training_a_prefix_leaves_the_base_bit_identical(lms, family):
    lm = lms(family)
    before = snapshot(lm)
    gen = torch.Generator().manual_seed(0)
    shape = (1, lm.num_kv_heads, 4, lm.head_dim)
    keys = [torch.randn(shape, generator=gen).requires_grad_() for _ in range(lm.num_layers)]
    values = [torch.randn(shape, generator=gen).requires_grad_() for _ in range(lm.num_layers)]
    start = [t.detach().clone() for t in keys + values]
    optimizer = torch.optim.AdamW(keys + values, lr=1e-2)
    ids = [lm.encode(t) for t in PROMPTS]
    logits, mask = lm.logits(ids, prefix=Prefix(keys, values))
    lm_loss(logits, mask, ids).backward()
    optimizer.step()
    assert all(not torch.equal(t, s) for t, s in zip(keys + values, start))
    assert_unchanged(lm, before)


def test_logits_refuse_texts_longer_than_the_context(tiny_lm):
    with pytest.raises(MemkitError, match="context"):
        tiny_lm.logits([[5] * (tiny_lm.max_context + 1)])
