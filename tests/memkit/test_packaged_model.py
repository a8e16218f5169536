"""The packaged world LM: memkit's default model loads through the ordinary path, reads, and does not already
know the test entities (a quick check of what ``memkit bench world`` measures in full)."""

from __future__ import annotations

import pytest

from memkit.datasets.metrics import f1
from experiments.world.entities import WorldConfig, build_world
from experiments.world.examples import qa_examples
from memkit.defaults import PACKAGED_MODEL, default_model
from memkit.prompts import STOP, qa_prompt


@pytest.fixture(scope="module")
def world_lm():
    from memkit.lm import FrozenLM

    return FrozenLM.load(default_model(), device="cpu")


@pytest.fixture(scope="module")
def test_questions():
    world = build_world(WorldConfig(seed=0))
    return list(qa_examples(world, "test", ("reading",), types=("single",)))[::37][:32]


def _mean_f1(lm, examples, with_documents: bool) -> float:
    prompts = [qa_prompt(e.question, e.passages if with_documents else None) for e in examples]
    preds = lm.generate(prompts, max_new_tokens=12, stop=STOP, batch_size=16)
    return sum(f1(p, [e.answer]) for p, e in zip(preds, examples)) / len(examples)


def test_the_packaged_model_is_small_and_is_the_default():
    assert default_model() == str(PACKAGED_MODEL)
    size = sum(p.stat().st_size for p in PACKAGED_MODEL.rglob("*") if p.is_file())
    assert size <= 20 * 2**20, f"packaged model is {size / 2**20:.1f} MB"


def test_the_packaged_model_reads_test_entities_it_never_saw(world_lm, test_questions):
    assert _mean_f1(world_lm, test_questions, with_documents=True) >= 0.9


def test_the_packaged_model_does_not_know_test_entities_closed_book(world_lm, test_questions):
    assert _mean_f1(world_lm, test_questions, with_documents=False) <= 0.1


def test_the_packaged_model_binds_values_to_relations(world_lm):
    """A biography names two cities (birth and home): reading must pick the one the question asks for, not
    either city (a model that only matches the value's type scores about 50 on both)."""
    from experiments.world.reading_by_attribute import reading_by_attribute

    scores = reading_by_attribute(world_lm, n=160, seed=5)
    assert scores["birth_city"][1] >= 80 and scores["home_city"][1] >= 80, scores
