"""Fixtures for the server tests: a tiny model on disk, a ready-made store (copied, not rebuilt, per module), and
``memkit serve`` subprocesses on free loopback ports, stopped at the end of their module (SIGTERM, then SIGKILL).

A server takes seconds to start (it imports torch and loads its model), so each module shares its servers
between its tests (module scope); tests that change a collection use one of their own.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from serverhelpers import RAG_OPTIONS, ServerProcess, start_server


class Memkit:
    """Runs ``memkit --store STORE ...`` in-process (typer's runner) and keeps the result."""

    def __init__(self, store: Path):
        self.store = Path(store)
        self.runner = CliRunner()

    def __call__(self, *args):
        return self.runner.invoke(app, ["--store", str(self.store), *map(str, args)])


@pytest.fixture(scope="session")
def model_dir(tiny_model_dir) -> Path:
    return tiny_model_dir("llama")


@pytest.fixture(scope="session")
def template_store(tmp_path_factory, model_dir) -> Path:
    """A store with one rag collection ("default") on the tiny llama, no documents; copy it, do not use it."""
    store = tmp_path_factory.mktemp("template") / "store"
    args = ["init", "--model", model_dir, "--method", "rag"]
    for key, value in RAG_OPTIONS.items():
        args += ["-o", f"{key}={value}"]
    result = Memkit(store)(*args)
    assert result.exit_code == 0, result.output + result.stderr
    return store


@pytest.fixture(scope="module")
def new_store(tmp_path_factory, template_store):
    """``new_store()``: a fresh copy of the template store (one "default" rag collection, empty)."""

    def make() -> Path:
        dest = tmp_path_factory.mktemp("store") / "store"
        shutil.copytree(template_store, dest)
        return dest

    return make


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """``servers(store, *args, api_key=None, wait=True)``: a started ``memkit serve`` (``ServerProcess``); every
    server started this way is stopped when the module ends, whatever happened."""
    started: list[ServerProcess] = []
    logs = tmp_path_factory.mktemp("server-logs")

    def start(store, *args, api_key: str | None = None, wait: bool = True) -> ServerProcess:
        server = start_server(store, *args, log_dir=logs, api_key=api_key, wait=wait)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def memkit_cli():
    """``memkit_cli(store)``: the in-process ``memkit --store STORE`` runner."""
    return Memkit
