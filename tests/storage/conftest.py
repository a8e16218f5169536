"""Fixtures for the store's tests: a store factory and a filled store, on SQLite and on PostgreSQL.

Every test that makes its stores through ``make_store`` (or asks for ``db``/``new_db_url``) runs twice: on
SQLite inside the store (``[sqlite]``) and on a fresh PostgreSQL database per store (``[postgres]``, marked
``postgres``: deselected by default, run by ``pytest -m postgres`` or ``make test-postgres``). A test about
SQLite itself (its file, its journal) says so with ``storehelpers.sqlite_only``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest

from storage import Store
from storehelpers import doc, keyed, unit_rows


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request) -> str:
    """The database the test's stores are made on: ``sqlite`` (inside the store) or ``postgres``."""
    return request.param


@pytest.fixture
def new_db_url(db, request) -> Callable[[], str | None]:
    """``new_db_url()``: the ``db_url`` a new store is made with: None (SQLite inside the store), or the URL of
    a new PostgreSQL database, one per call (two stores of one test do not share a database unless told to)."""
    if db == "sqlite":
        return lambda: None
    return request.getfixturevalue("postgres_db")


@pytest.fixture
def make_store(tmp_path, new_db_url):
    """``make_store(name="s", **overrides)`` creates a store for writing (on the test's ``db``, unless
    ``db_url`` is given); every store made is closed at the end."""
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
        if "db_url" not in kwargs:
            kwargs["db_url"] = new_db_url()
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
