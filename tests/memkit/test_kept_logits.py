"""Logits at chosen positions only (``FrozenLM.logits(keep=...)``) and the losses built on them: the same numbers
and gradients as the full logits, for several families, with a delta and after a prefix, and for a model whose
forward has no ``logits_to_keep``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from memkit.adapters.encode import encode_documents
from memkit.adapters.generator import AdapterGenerator
from memkit.adapters.state import AdapterState
from memkit.hooks import Prefix
from memkit.lm import FrozenLM
from memkit.lora import next_token_loss as lora_loss
from memkit.training import next_token_loss

DOCS = ["Ada Varn lives in Port Elsin and keeps the lighthouse.", "Bo Kell bakes bread in Dunmere."]
TEXTS = ["Question: Where does Ada Varn live?\nAnswer: Port Elsin\n", "Bo Kell is a baker."]


@pytest.fixture(scope="module", params=("llama", "gpt2", "gpt_neox"))
def lm(request, tiny_model_dir):
    return FrozenLM.load(str(tiny_model_dir(request.param)), device="cpu", dtype="float32")


def _generator(lm) -> AdapterGenerator:
    gen = AdapterGenerator.for_lm(lm, lm.target_modules("attn_out"), state_rank=8, svd_rank=2, alpha=8.0, seed=0)
    torch.manual_seed(1)
    for part in gen.parts:
        torch.nn.init.normal_(part.b.weight, std=0.5)
    return gen


def _full_loss(lm, seqs, weights, **kw) -> torch.Tensor:
    """The weighted loss from every position's logits (what ``next_token_loss`` computed before it kept some)."""
    logits, mask = lm.logits(seqs, **kw)
    width = logits.shape[1]
    w = torch.zeros(len(seqs), width)
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, (s, ws) in enumerate(zip(seqs, weights)):
        ids[i, : len(s)] = torch.tensor(s)
        w[i, : len(ws)] = torch.tensor(ws)
    tw = w[:, 1:] * mask[:, 1:].float()
    k = tw > 0
    losses = F.cross_entropy(logits[:, :-1][k].float(), ids[:, 1:][k], reduction="none")
    return (losses * tw[k]).sum() / tw[k].sum()


def _seqs(lm, lead=True):
    seqs = [(lm.bos_ids if lead else []) + lm.encode(t) for t in TEXTS]
    # uneven weights: only the second half of the first text, all of the second at 0.5
    weights = [[0.0] * (len(seqs[0]) // 2) + [1.0] * (len(seqs[0]) - len(seqs[0]) // 2), [0.5] * len(seqs[1])]
    return seqs, weights


def test_kept_logits_are_the_full_logits_rows(lm):
    seqs, _ = _seqs(lm)
    full, mask = lm.logits(seqs)
    keep = torch.zeros(mask.shape, dtype=torch.bool)
    keep[0, 1] = keep[0, len(seqs[0]) - 2] = keep[1, 0] = True
    kept, kept_mask = lm.logits(seqs, keep=keep)
    assert kept.shape == (3, full.shape[-1])
    torch.testing.assert_close(kept, full[keep], rtol=1e-5, atol=1e-5)
    assert torch.equal(kept_mask, mask)
    with pytest.raises(ValueError, match="bool mask of shape"):
        lm.logits(seqs, keep=keep.long())


def test_weighted_loss_and_gradients_match_full_logits_with_a_delta(lm):
    seqs, weights = _seqs(lm)
    results = []
    for fn in (next_token_loss, None):
        gen = _generator(lm)
        states = encode_documents(lm, gen, DOCS, chunk_tokens=8, grad=True)
        delta = gen.delta(AdapterState.stack(states))
        loss = (next_token_loss(lm, seqs, weights, delta=delta) if fn else
                _full_loss(lm, seqs, weights, delta=delta))
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in gen.parameters() if p.grad is not None]))
    (a, ga), (b, gb) = results
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert len(ga) == len(gb) > 0
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6)


def test_weighted_loss_after_a_prefix_matches_full_logits(lm):
    seqs, weights = _seqs(lm, lead=False)
    g = torch.Generator().manual_seed(2)
    shape = (1, lm.num_kv_heads, 3, lm.head_dim)
    prefix = Prefix([torch.randn(shape, generator=g) for _ in range(lm.num_layers)],
                    [torch.randn(shape, generator=g) for _ in range(lm.num_layers)])
    torch.testing.assert_close(next_token_loss(lm, seqs, weights, prefix=prefix),
                               _full_loss(lm, seqs, weights, prefix=prefix), rtol=1e-5, atol=1e-6)


def test_nothing_to_predict_is_a_zero_loss(lm):
    seqs, _ = _seqs(lm)
    loss = next_token_loss(lm, seqs, [[0.0] * len(s) for s in seqs])
    assert float(loss) == 0.0


def test_a_model_without_logits_to_keep_gets_its_rows_cut_after(lm, monkeypatch):
    seqs, weights = _seqs(lm)
    expected = next_token_loss(lm, seqs, weights)
    monkeypatch.setattr(lm, "_keeps_logits", False)
    torch.testing.assert_close(next_token_loss(lm, seqs, weights), expected, rtol=1e-5, atol=1e-6)
    unweighted = [[1.0] * len(s) for s in seqs]
    torch.testing.assert_close(lora_loss(lm, seqs, None), _full_loss(lm, seqs, unweighted), rtol=1e-5, atol=1e-6)
