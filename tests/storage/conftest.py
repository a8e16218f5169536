"""Fixtures for the store's tests: a store factory and a filled store."""

from __future__ import annotations

import numpy as np
import pytest

from storage import Store
from storehelpers import doc, keyed, unit_rows


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def make_store(tmp_path):
    """``make_store(name="s", **overrides)`` creates a store for writing; every store made is closed at the end."""
    made: list[Store] = []

    def make(name: str = "store", **overrides) -> Store:
        kwargs = dict(
            model_id="tiny/model",
            model_revision="abc123",
            model_fingerprint="fp-1",
            method="rag",
            method_config={"chunk_tokens": 64, "top_k": 4},
            key_dim=None,
        )
        kwargs.update(overrides)
        store = Store.create(tmp_path / name, **kwargs)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def filled(make_store, rng):
    """A writer store holding 60 documents, each with one keyed ``chunk`` record carrying a small payload."""
    store = make_store()
    keys = unit_rows(rng, 60)
    for i, key in enumerate(keys):
        store.add_document(doc(i), [keyed(key, tensors={"h": rng.standard_normal((2, 3)).astype(np.float32)})])
    return store, keys
