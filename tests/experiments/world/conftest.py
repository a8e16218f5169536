"""Shared worlds for the world tests: a small one for most checks, the default one built once."""

from __future__ import annotations

import pytest

from experiments.world.entities import WorldConfig, build_world
from experiments.world.questions import questions
from experiments.world.render import documents
from worldhelpers import SMALL


@pytest.fixture(scope="session")
def small_world():
    return build_world(SMALL)


@pytest.fixture(scope="session")
def small_docs(small_world):
    return documents(small_world)


@pytest.fixture(scope="session")
def small_questions(small_world):
    return questions(small_world)


@pytest.fixture(scope="session")
def default_world():
    return build_world(WorldConfig())


@pytest.fixture(scope="session")
def default_docs(default_world):
    return documents(default_world)
