"""The packaged adapter generator: it belongs to the packaged world LM and carries a document's facts (the
answer loss with a question's own document's adapter is well below the loss with another document's)."""

from __future__ import annotations

import random

import pytest
import torch

from memkit.methods.adapter import PACKAGED_GENERATOR

pytestmark = pytest.mark.skipif(not (PACKAGED_GENERATOR / "generator.json").is_file(),
                                reason="this checkout carries no packaged generator")


def test_the_packaged_generator_reads_test_documents_into_its_adapters():
    from experiments.world.adapter_data import context_items
    from experiments.world.entities import WorldConfig, build_world
    from memkit.adapters.encode import encode_documents
    from memkit.adapters.generator import AdapterGenerator
    from memkit.adapters.state import AdapterState
    from memkit.adapters.train import answer_loss, qa_sequence
    from memkit.defaults import default_model
    from memkit.lm import FrozenLM

    lm = FrozenLM.load(default_model(), device="cpu")
    gen = AdapterGenerator.load(PACKAGED_GENERATOR, lm).eval()
    items = context_items(build_world(WorldConfig(seed=0)), "test", random.Random(7), max_questions=1,
                          types=("single",))[:24]
    with torch.no_grad():
        states = [AdapterState.total(encode_documents(lm, gen, it.documents, chunk_tokens=128)) for it in items]
        stacked = AdapterState.stack(states)
        shifted = AdapterState({n: m.roll(1, dims=0) for n, m in stacked.mats.items()})
        seqs = [qa_sequence(lm, it.qas) for it in items]
        own = float(answer_loss(lm, seqs, gen.delta(stacked)))
        other = float(answer_loss(lm, seqs, gen.delta(shifted)))
    assert own < other - 0.5, (own, other)
