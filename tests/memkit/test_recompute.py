"""Gradient checkpointing through the frozen LM (``FrozenLM.recomputing``): the loss and the gradients of what
trains (a generator through its delta, a key/value prefix) are those without it, for several families, fewer
activations are kept, and the decoder layers are as before once it closes."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch

import memkit.recompute as recompute
from memkit.adapters.encode import encode_documents
from memkit.adapters.generator import AdapterGenerator
from memkit.adapters.state import AdapterState
from memkit.hooks import Prefix
from memkit.lm import FrozenLM
from memkit.training import next_token_loss

DOCS = ["Ada Varn lives in Port Elsin and keeps the lighthouse.", "Bo Kell bakes bread in Dunmere."]
TEXTS = ["Question: Where does Ada Varn live?\nAnswer: Port Elsin\n", "Bo Kell is a baker."]
FAMILIES = ("llama", "gpt2", "gpt_neox")


@pytest.fixture(scope="module", params=FAMILIES)
def lm(request, tiny_model_dir):
    return FrozenLM.load(str(tiny_model_dir(request.param)), device="cpu", dtype="float32")


def _generator(lm) -> AdapterGenerator:
    gen = AdapterGenerator.for_lm(lm, lm.target_modules("attn_out"), state_rank=8, svd_rank=2, alpha=8.0,
                                  base_rank=2, seed=0)
    torch.manual_seed(1)
    for part in gen.parts:
        torch.nn.init.normal_(part.b.weight, std=0.5)
        torch.nn.init.normal_(part.base_b, std=0.5)
    return gen


def _prefix_params(lm, length: int = 3) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    shape = (1, lm.num_kv_heads, length, lm.head_dim)
    return [torch.randn(shape, generator=g).requires_grad_() for _ in range(2 * lm.num_layers)]


def _seqs(lm, lead: bool) -> tuple[list[list[int]], list[list[float]]]:
    seqs = [(lm.bos_ids if lead else []) + lm.encode(t) for t in TEXTS]
    return seqs, [[1.0] * len(s) for s in seqs]


def delta_loss_and_grads(lm, gen, recomputing: bool):
    """The loss of the texts read with the generator's (per-sequence) delta of the documents, and its gradients
    on every generator parameter."""
    gen.zero_grad(set_to_none=True)
    seqs, weights = _seqs(lm, lead=True)
    with lm.recomputing() if recomputing else nullcontext():
        states = encode_documents(lm, gen, DOCS, chunk_tokens=8, grad=True)
        loss = next_token_loss(lm, seqs, weights, delta=gen.delta(AdapterState.stack(states)))
        loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in gen.named_parameters() if p.grad is not None}


def prefix_loss_and_grads(lm, params, recomputing: bool):
    """The loss of the texts read after a trainable key/value prefix, and its gradients on the prefix."""
    for p in params:
        p.grad = None
    seqs, weights = _seqs(lm, lead=False)
    prefix = Prefix(keys=params[0::2], values=params[1::2])
    with lm.recomputing() if recomputing else nullcontext():
        loss = next_token_loss(lm, seqs, weights, prefix=prefix)
        loss.backward()
    return loss.detach(), {i: p.grad.clone() for i, p in enumerate(params)}


def assert_same(plain, recomputed):
    (loss, grads), (loss_r, grads_r) = plain, recomputed
    assert torch.allclose(loss, loss_r, rtol=1e-6, atol=1e-7)
    assert grads.keys() == grads_r.keys() and grads
    for name in grads:
        assert torch.allclose(grads[name], grads_r[name], rtol=1e-5, atol=1e-7), name


def layer_forwards(lm) -> list[bool]:
    from memkit.hooks import decoder_layers

    return ["forward" in vars(layer) or "_memkit_recomputing" in vars(layer)
            for layer in decoder_layers(lm.model, lm.num_layers)[1]]


def test_a_generators_delta_trains_the_same_with_recomputing(lm):
    gen = _generator(lm)
    plain = delta_loss_and_grads(lm, gen, recomputing=False)
    assert any(g.abs().sum() > 0 for g in plain[1].values())
    assert_same(plain, delta_loss_and_grads(lm, gen, recomputing=True))
    assert not any(layer_forwards(lm))


def test_a_prefix_trains_the_same_with_recomputing(lm):
    params = _prefix_params(lm)
    plain = prefix_loss_and_grads(lm, params, recomputing=False)
    assert all(g.abs().sum() > 0 for g in plain[1].values())
    assert_same(plain, prefix_loss_and_grads(lm, params, recomputing=True))
    assert not any(layer_forwards(lm))


def test_recomputing_keeps_fewer_activations_and_replays_every_layer(lm, monkeypatch):
    gen = _generator(lm)
    seqs, weights = _seqs(lm, lead=True)
    replays = []
    real = recompute.checkpoint

    def counting(fn, *args, **kwargs):
        replays.append(fn)
        return real(fn, *args, **kwargs)

    monkeypatch.setattr(recompute, "checkpoint", counting)

    def saved_bytes(recomputing: bool) -> int:
        total = [0]

        def pack(t):
            total[0] += t.numel() * t.element_size()
            return t

        states = encode_documents(lm, gen, DOCS, chunk_tokens=8, grad=True)
        delta = gen.delta(AdapterState.stack(states))
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            with lm.recomputing() if recomputing else nullcontext():
                next_token_loss(lm, seqs, weights, delta=delta)
        return total[0]

    kept, kept_recomputing = saved_bytes(False), saved_bytes(True)
    assert len(replays) == lm.num_layers
    assert kept_recomputing < kept


def test_the_layers_are_restored_after_recomputing_even_on_error(lm):
    from memkit.hooks import decoder_layers

    layers = decoder_layers(lm.model, lm.num_layers)[1]
    before = [dict(vars(layer)) for layer in layers]
    with pytest.raises(RuntimeError, match="boom"):
        with lm.recomputing():
            assert all(layer_forwards(lm))
            with lm.recomputing():                  # nested: adds nothing, takes nothing away
                pass
            assert all(layer_forwards(lm))
            raise RuntimeError("boom")
    assert [dict(vars(layer)) for layer in layers] == before
    assert not any(layer_forwards(lm))


# The checks above would catch a broken replay: with the wrapper's replay of the first run's hooks (or of the
# prefix cache's state) taken away, the backward pass recomputes something else, and the gradients differ or
# torch's checkpoint refuses the replay.

def _broken(plain_fn, recomputed_fn):
    plain = plain_fn()
    try:
        recomputed = recomputed_fn()
    except Exception:   # torch.utils.checkpoint.CheckpointError, or a shape mismatch in the replay
        return True
    try:
        assert_same(plain, recomputed)
    except AssertionError:
        return True
    return False


def test_a_replay_without_the_first_runs_hooks_would_be_caught(lm, monkeypatch):
    monkeypatch.setattr(recompute, "_hooks_as", lambda state: nullcontext())
    gen = _generator(lm)
    assert _broken(lambda: delta_loss_and_grads(lm, gen, False), lambda: delta_loss_and_grads(lm, gen, True))


def test_a_replay_that_does_not_restore_the_prefix_cache_would_be_caught(lm, monkeypatch):
    monkeypatch.setattr(recompute, "_restore_caches", lambda state: None)
    params = _prefix_params(lm)
    assert _broken(lambda: prefix_loss_and_grads(lm, params, False),
                   lambda: prefix_loss_and_grads(lm, params, True))
