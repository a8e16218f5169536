"""The adapter generator's maths as invariants, on tiny random models of several families."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from memkit.adapters.encode import chunk_ids, encode_documents
from memkit.adapters.generator import AdapterGenerator
from memkit.adapters.state import AdapterState
from memkit.errors import ConfigError
from memkit.lm import FrozenLM

TEXT_A = "Ada Varn lives in Port Elsin and works as a weaver for the Corven Mills."
TEXT_B = "The Corven Mills were founded in 1902 and make rope, sails and twine."


def trained_like(gen: AdapterGenerator, seed: int = 1) -> AdapterGenerator:
    """The generator with B set to random values, as after training (a fresh B is zero)."""
    torch.manual_seed(seed)
    for part in gen.parts:
        torch.nn.init.normal_(part.b.weight, std=0.5)
    return gen


@pytest.fixture(params=["llama", "gpt2", "qwen2"])
def lm(request, tiny_model_dir):
    return FrozenLM.load(str(tiny_model_dir(request.param)), device="cpu", dtype="float32")


def logits_with_delta_and_with_its_peft_export(lm, delta, ids, tmp_path):
    """Logits of ``ids`` with ``delta`` applied by memkit, and with the delta exported as a peft LoRA and loaded
    by peft onto a copy of the base model."""
    import copy

    from peft import PeftModel

    from memkit.lora import LoraFactors

    out = LoraFactors.from_delta(lm, delta).export_peft(tmp_path / "lora")
    peft_model = PeftModel.from_pretrained(copy.deepcopy(lm.model), str(out)).eval()
    with torch.no_grad():
        ours, _ = lm.logits(ids, delta=delta)
        theirs = peft_model(input_ids=torch.tensor(ids)).logits
    return ours, theirs


def base_logits_unchanged_by(lm, gen, state, ids):
    """The base logits of ``ids``, after checking ``gen``'s delta of ``state`` leaves them bit-identical (as a
    fresh generator's must: B starts at zero)."""
    with torch.no_grad():
        base, _ = lm.logits(ids)
        adapted, _ = lm.logits(ids, delta=gen.delta(state))
    torch.testing.assert_close(adapted, base, rtol=0, atol=0)
    return base


def make(lm, **kw) -> AdapterGenerator:
    return AdapterGenerator.for_lm(lm, lm.target_modules("attn_out"), state_rank=16, svd_rank=4, alpha=16.0, **kw)


def test_a_fresh_generator_leaves_logits_unchanged(lm):
    gen = make(lm)
    (state,) = encode_documents(lm, gen, [TEXT_A], chunk_tokens=16)
    assert state.tokens == len(lm.encode(TEXT_A)) and any(m.abs().sum() > 0 for m in state.mats.values())
    base_logits_unchanged_by(lm, gen, state, [TEXT_B])


def test_the_delta_is_the_normalised_state_applied_as_a_rank_r_lora(lm):
    gen = trained_like(make(lm))
    (state,) = encode_documents(lm, gen, [TEXT_A], chunk_tokens=64)
    delta = gen.delta(state)
    name = gen.config.targets[0]
    part = gen.parts[0]
    s = state.mats[name].double().numpy()
    u, _, vt = np.linalg.svd(s)
    r = gen.config.svd_rank
    n = u[:, :r] @ vt[:r]                                      # N = U_r V_r^T
    expected = gen.config.scale * part.b.weight.double().detach().numpy() @ n.T @ part.a1.weight.double().detach().numpy()
    a, b = delta.factors[name]
    got = delta.scale * (b.double() @ a.double()).detach().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert a.shape[0] == r and b.shape[1] == r
    # scale does not matter: the same document's state times 7 gives the same delta
    a7, b7 = gen.delta(AdapterState({k: 7 * v for k, v in state.mats.items()}, state.tokens)).factors[name]
    torch.testing.assert_close(b7 @ a7, b @ a, atol=1e-5, rtol=1e-4)


def test_frobenius_norm_applies_the_state_over_its_norm_as_a_rank_R_lora(tiny_lm, tmp_path):
    fresh = make(tiny_lm, norm="frobenius")
    (state,) = encode_documents(tiny_lm, fresh, [TEXT_A], chunk_tokens=64)
    ids = [tiny_lm.bos_ids + tiny_lm.encode(TEXT_B)]
    base = base_logits_unchanged_by(tiny_lm, fresh, state, ids)
    gen = trained_like(fresh)
    delta = gen.delta(state)
    name = gen.config.targets[0]
    s = state.mats[name].double().numpy()
    part = gen.parts[0]
    expected = (gen.config.scale * part.b.weight.double().detach().numpy() @ (s / np.linalg.norm(s)).T
                @ part.a1.weight.double().detach().numpy())
    a, b = delta.factors[name]
    np.testing.assert_allclose(delta.scale * (b.double() @ a.double()).detach().numpy(), expected, atol=1e-5)
    assert a.shape[0] == gen.config.state_rank
    ours, theirs = logits_with_delta_and_with_its_peft_export(tiny_lm, delta, ids, tmp_path)
    assert (ours - base).abs().max() > 1e-3
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="norm"):
        make(tiny_lm, norm="spectral")


def test_a_centred_state_is_built_from_the_chunks_own_deviations(tiny_lm):
    gen = make(tiny_lm, center=True)
    ids = tiny_lm.encode(TEXT_A)[:12]
    (state,) = encode_documents(tiny_lm, gen, [ids], chunk_tokens=16)
    hidden, _ = tiny_lm.hidden_states([tiny_lm.bos_ids + ids])
    name, layer, part = gen.config.targets[1], gen.config.layers[1], gen.parts[1]
    with torch.no_grad():
        h = part.norm(hidden[layer][0, len(tiny_lm.bos_ids):])
        h = h - h.mean(0)
        expected = part.a2(h).T @ part.a3(h)
        plain = make(tiny_lm).parts[1].state(hidden[layer], torch.ones(1, hidden[layer].shape[1]))[0]
    torch.testing.assert_close(state.mats[name], expected, atol=1e-5, rtol=1e-4)
    assert (state.mats[name] - plain).abs().max() > 1e-3, "centring must change the state"


def test_input_keys_come_from_the_target_modules_own_inputs(tiny_lm):
    gen = make(tiny_lm, key_source="input")
    part, name, layer = gen.parts[0], gen.config.targets[0], gen.config.layers[0]
    torch.testing.assert_close(part.a2.weight, part.a1.weight, rtol=0, atol=0)
    ids = tiny_lm.encode(TEXT_A)[:12]
    (state,) = encode_documents(tiny_lm, gen, [ids], chunk_tokens=16)
    seen = {}
    module = tiny_lm.linear_modules()[name]
    handle = module.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0].detach()))
    try:
        hidden, _ = tiny_lm.hidden_states([tiny_lm.bos_ids + ids])
    finally:
        handle.remove()
    lead = len(tiny_lm.bos_ids)
    with torch.no_grad():
        keys = part.a2(part.key_norm(seen["x"][0, lead:]))
        values = part.a3(part.norm(hidden[layer][0, lead:]))
    torch.testing.assert_close(state.mats[name], keys.T @ values, atol=1e-5, rtol=1e-4)
    (again,) = encode_documents(tiny_lm, gen, [ids], chunk_tokens=16, mode="sequential")
    torch.testing.assert_close(again.mats[name], state.mats[name], rtol=0, atol=0)
    with pytest.raises(ConfigError, match="key_source"):
        make(tiny_lm, key_source="output")


def test_a_base_lora_is_added_to_every_delta_and_starts_at_zero(tiny_lm):
    fresh = make(tiny_lm, base_rank=3)
    a_doc, b_doc = encode_documents(tiny_lm, fresh, [TEXT_A, TEXT_B], chunk_tokens=64)
    ids = [tiny_lm.bos_ids + tiny_lm.encode(TEXT_B)]
    base_logits_unchanged_by(tiny_lm, fresh, a_doc, ids)
    gen = trained_like(fresh)
    torch.manual_seed(2)
    for part in gen.parts:
        torch.nn.init.normal_(part.base_b, std=0.5)
    name, part = gen.config.targets[0], gen.parts[0]
    a, b = gen.delta(a_doc).factors[name]
    assert a.shape[0] == gen.config.svd_rank + 3
    plain = make(tiny_lm)
    plain.load_state_dict({k: v for k, v in gen.state_dict().items() if "base_" not in k})
    pa, pb = plain.delta(a_doc).factors[name]
    torch.testing.assert_close(b @ a, pb @ pa + part.base_b @ part.base_a, atol=1e-5, rtol=1e-4)
    ea, eb = gen.delta(gen.empty_state()).factors[name]
    torch.testing.assert_close(eb @ ea, part.base_b @ part.base_a, atol=1e-6, rtol=1e-5)
    batched = gen.delta(AdapterState.stack([a_doc, b_doc]))
    ba, bb = batched.factors[name]
    torch.testing.assert_close(bb[0] @ ba[0], b @ a, atol=1e-5, rtol=1e-4)


def test_a_calibrated_mean_state_is_taken_out_per_token_and_states_still_add(tiny_lm):
    gen = make(tiny_lm, mean_state=True)
    texts = [TEXT_A, TEXT_B]
    raw = encode_documents(tiny_lm, gen, texts, chunk_tokens=16)
    gen.calibrate(raw)
    a, b = encode_documents(tiny_lm, gen, texts, chunk_tokens=16)
    (both,) = encode_documents(tiny_lm, gen, [tiny_lm.encode(TEXT_A) + tiny_lm.encode(TEXT_B)], chunk_tokens=16)
    for name, part in zip(gen.config.targets, gen.parts):
        torch.testing.assert_close(a.mats[name], raw[0].mats[name] - a.tokens * part.mean, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close((a + b).mats[name], torch.zeros_like(part.mean), atol=1e-4, rtol=1e-4)
        assert a.mats[name].abs().max() > 1e-3
    assert both.tokens == a.tokens + b.tokens
    with pytest.raises(ConfigError, match="mean_state"):
        make(tiny_lm).calibrate(raw)


def test_states_add_and_subtract(tiny_lm):
    gen = make(tiny_lm)
    a, b = encode_documents(tiny_lm, gen, [TEXT_A, TEXT_B], chunk_tokens=16)
    restored = (a + b) - b
    for name in a.mats:
        torch.testing.assert_close(restored.mats[name], a.mats[name], atol=1e-4, rtol=1e-5)
    assert restored.tokens == a.tokens
    with pytest.raises(ConfigError, match="different modules"):
        a + AdapterState({"other": torch.zeros(16, 16)})


def test_merged_state_of_two_documents_is_the_state_of_both(tiny_lm):
    """In parallel mode, a text made of two chunk-aligned documents has the sum of their states."""
    gen = make(tiny_lm)
    ids_a, ids_b = tiny_lm.encode(TEXT_A), tiny_lm.encode(TEXT_B)
    ids_a = ids_a[: 8 * (len(ids_a) // 8)]
    sa, sb, both = encode_documents(tiny_lm, gen, [ids_a, ids_b, ids_a + ids_b], chunk_tokens=8)
    merged = AdapterState.total([sa, sb])
    for name in merged.mats:
        torch.testing.assert_close(merged.mats[name], both.mats[name], atol=1e-4, rtol=1e-5)
    assert merged.tokens == both.tokens


def test_sequential_and_parallel_agree_on_one_chunk_and_differ_on_many(tiny_lm):
    gen = trained_like(make(tiny_lm))
    n = len(tiny_lm.encode(TEXT_A))
    (par,), (seq,) = (encode_documents(tiny_lm, gen, [TEXT_A], chunk_tokens=n, mode=m)
                      for m in ("parallel", "sequential"))
    for name in par.mats:
        torch.testing.assert_close(seq.mats[name], par.mats[name])
    (par,), (seq,) = (encode_documents(tiny_lm, gen, [TEXT_A], chunk_tokens=5, mode=m)
                      for m in ("parallel", "sequential"))
    name = gen.config.targets[-1]
    assert not torch.allclose(seq.mats[name], par.mats[name])     # later chunks were read with the adapter


def test_an_empty_document_gives_no_delta(tiny_lm):
    gen = trained_like(make(tiny_lm))
    (state,) = encode_documents(tiny_lm, gen, [""], chunk_tokens=16)
    assert state.tokens == 0
    for a, b in gen.delta(state).factors.values():
        assert not (b @ a).any()


def test_base_weights_bit_identical_after_generator_training_steps(tiny_lm):
    gen = make(tiny_lm)
    before = {k: v.clone() for k, v in tiny_lm.model.state_dict().items()}
    opt = torch.optim.AdamW(gen.parameters(), lr=1e-2)
    for _ in range(3):
        (state,) = encode_documents(tiny_lm, gen, [TEXT_A], chunk_tokens=8, grad=True)
        logits, _ = tiny_lm.logits([TEXT_B], delta=gen.delta(state))
        ids = torch.tensor([tiny_lm.bos_ids + tiny_lm.encode(TEXT_B)])
        loss = torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:])
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in gen.parameters())
        opt.step()
        opt.zero_grad()
    after = tiny_lm.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(not p.requires_grad for p in tiny_lm.model.parameters())
    assert any(part.b.weight.abs().sum() > 0 for part in gen.parts)   # the generator did learn something


def test_save_and_load_round_trip_and_refuse_another_model(tiny_lm, tiny_model_dir, tmp_path):
    gen = trained_like(make(tiny_lm))
    gen.save(tmp_path / "gen", extra={"steps": 3})
    again = AdapterGenerator.load(tmp_path / "gen", tiny_lm)
    for (k, v), (k2, v2) in zip(gen.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    other = FrozenLM.load(str(tiny_model_dir("llama", seed=3)), device="cpu", dtype="float32")
    with pytest.raises(ConfigError, match="another base model"):
        AdapterGenerator.load(tmp_path / "gen", other)
    with pytest.raises(ConfigError, match="make one with"):
        AdapterGenerator.load(tmp_path / "missing")


def test_chunking_and_option_errors(tiny_lm):
    assert chunk_ids(list(range(10)), 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    gen = make(tiny_lm)
    with pytest.raises(ConfigError, match="chunk_tokens"):
        encode_documents(tiny_lm, gen, [TEXT_A], chunk_tokens=10_000)
    with pytest.raises(ConfigError, match="parallel or sequential"):
        encode_documents(tiny_lm, gen, [TEXT_A], chunk_tokens=8, mode="both")


def test_exported_lora_of_a_merged_adapter_gives_peft_the_same_logits(lm, tmp_path):
    gen = trained_like(make(lm))
    merged = AdapterState.total(encode_documents(lm, gen, [TEXT_A, TEXT_B], chunk_tokens=16))
    delta = gen.delta(merged)
    ids = [lm.bos_ids + lm.encode("Where does Ada Varn live?")]
    with torch.no_grad():
        base, _ = lm.logits(ids)
    ours, theirs = logits_with_delta_and_with_its_peft_export(lm, delta, ids, tmp_path)
    assert (ours - base).abs().max() > 1e-3, "the adapter must change something for the check to mean anything"
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_the_delta_applied_on_cuda_gives_the_cpu_logits(tiny_model_dir):
    cpu = FrozenLM.load(str(tiny_model_dir("llama")), device="cpu", dtype="float32")
    cuda = FrozenLM.load(str(tiny_model_dir("llama")), device="cuda", dtype="float32")
    gen_cpu = trained_like(make(cpu))
    gen_cuda = AdapterGenerator(gen_cpu.config).to("cuda")
    gen_cuda.load_state_dict(gen_cpu.state_dict())
    with torch.no_grad():
        states = [encode_documents(lm, g, [TEXT_A], chunk_tokens=16)[0] for lm, g in ((cpu, gen_cpu), (cuda, gen_cuda))]
        for name, m in states[0].mats.items():
            torch.testing.assert_close(states[1].mats[name].cpu(), m, rtol=1e-3, atol=1e-3)
        want, _ = cpu.logits([TEXT_B], delta=gen_cpu.delta(states[0]))
        got, _ = cuda.logits([TEXT_B], delta=gen_cuda.delta(states[1]))
        base, _ = cuda.logits([TEXT_B])
    assert (got.cpu() - base.cpu()).abs().max() > 1e-3            # the delta does act on CUDA
    torch.testing.assert_close(got.cpu(), want, rtol=1e-3, atol=1e-3)
