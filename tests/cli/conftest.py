"""Fixtures for CLI tests: tiny random models on disk and a runner that invokes the app in-process."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cli.main import app


@pytest.fixture(scope="session")
def model_dir(tiny_model_dir):
    return tiny_model_dir("llama")


@pytest.fixture(scope="session")
def other_model_dir(tiny_model_dir):
    return tiny_model_dir("gpt2", seed=1)


class Memkit:
    """Runs ``memkit --store STORE ...`` in-process and keeps the result."""

    def __init__(self, store):
        self.store = store
        self.runner = CliRunner()

    def __call__(self, *args, input=None):
        return self.runner.invoke(app, ["--store", str(self.store), *map(str, args)], input=input)

    def json(self, *args, input=None):
        result = self(*args, "--json", input=input)
        assert result.exit_code == 0, result.output + result.stderr
        return json.loads(result.stdout)


@pytest.fixture
def memkit(tmp_path):
    return Memkit(tmp_path / "store")


@pytest.fixture
def store_db(request) -> str:
    """The database ``rag_store`` is made on: ``sqlite`` unless a test asks for both (``pgserver.on_both_databases``:
    ``postgres`` then runs it on a fresh PostgreSQL database, ``--db-url``)."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
def rag_store(memkit, model_dir, store_db, request):
    db = ["--db-url", request.getfixturevalue("postgres_db")()] if store_db == "postgres" else []
    result = memkit("init", "--model", model_dir, "--method", "rag", "-o", "chunk_tokens=32", "-o", "chunk_overlap=4",
                    *db)
    assert result.exit_code == 0, result.output + result.stderr
    return memkit
