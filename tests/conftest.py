"""Shared test fixtures: tiny random models of every family, built locally once per session; nothing downloads."""

from __future__ import annotations

import json

from pathlib import Path
from typing import Callable

import pytest
import torch

from experiments.tiny_model import FAMILIES, build_tiny_model, build_tokenizer

# Tiny models run fastest on one thread; two threads on a loaded 2-core machine spin against each other.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """The small byte-level BPE tokenizer the tiny models share (<s>=0, </s>=1, <pad>=2)."""
    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> Callable[..., Path]:
    """``tiny_model_dir(family, seed=0, max_positions=256)``: a saved tiny model directory, built on first use."""
    root = tmp_path_factory.mktemp("tiny_models")
    built: dict[tuple[str, int, int], Path] = {}

    def get(family: str, *, seed: int = 0, max_positions: int = 256) -> Path:
        if family not in FAMILIES:
            raise ValueError(f"unknown family {family!r}")
        key = (family, seed, max_positions)
        if key not in built:
            out = root / f"{family}-s{seed}-p{max_positions}"
            built[key] = build_tiny_model(family, out, seed=seed, max_positions=max_positions,
                                          tokenizer=tiny_tokenizer)
        return built[key]

    return get


@pytest.fixture(scope="session")
def tiny_lm(tiny_model_dir):
    """The tiny llama model as a ``FrozenLM`` (CPU, float32). Shared: do not leave hooks or state on it."""
    from memkit.lm import FrozenLM

    return FrozenLM.load(str(tiny_model_dir("llama")), device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def tiny_generator_dir(tmp_path_factory, tiny_lm) -> Path:
    """An adapter generator for ``tiny_lm`` with random B (as if trained, so its deltas change the logits)."""
    from memkit.adapters.generator import AdapterGenerator

    gen = AdapterGenerator.for_lm(tiny_lm, tiny_lm.target_modules("attn_out"), state_rank=16, svd_rank=4,
                                  alpha=16.0, seed=0)
    torch.manual_seed(1)
    for part in gen.parts:
        torch.nn.init.normal_(part.b.weight, std=0.5)
    return gen.save(tmp_path_factory.mktemp("generator") / "tiny")


@pytest.fixture(scope="session")
def tiny_slot_dir(tmp_path_factory, tiny_lm) -> Path:
    """A small random slot model for ``tiny_lm`` (its prefixes change the LM's answers)."""
    from memkit.slots import SlotModel

    model = SlotModel.for_lm(tiny_lm, slots=3, mem_dim=16, key_dim=8, prefix_len=4, blocks=1, heads=2, seed=1)
    return model.save(tmp_path_factory.mktemp("slots") / "tiny")


# ---- PostgreSQL (tests marked `postgres`; `make test-postgres`) ---------------------------------------------


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server of this test session (``tests/pgserver.py``), started on first use and stopped at the
    end. Missing server binaries or driver fail the test that asked, saying what to install: a test selected
    with ``-m postgres`` is never quietly skipped."""
    import pgserver

    try:
        server = pgserver.start()
    except pgserver.PostgresUnavailable as e:
        pytest.fail(f"PostgreSQL tests need a server: {e}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def postgres_db(postgres_server) -> Callable[[], str]:
    """``postgres_db()``: the URL of a new, empty database on the session's server, one per call; every one is
    dropped when the test ends (sessions still open included), so no test sees another's rows."""
    made: list[str] = []

    def make() -> str:
        name = postgres_server.create_database()
        made.append(name)
        return postgres_server.url(name)

    yield make
    for name in made:
        postgres_server.drop_database(name)


# ---- small data files (the dataset loaders' tests, the bench's) ----------------------------------------------


@pytest.fixture
def write_json(tmp_path) -> Callable[[str, object], Path]:
    """``write_json(name, obj)``: write ``obj`` as JSON to ``tmp_path/name`` and return the path."""

    def write(name: str, obj: object) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
        return path

    return write


@pytest.fixture
def write_jsonl(tmp_path) -> Callable[[str, list], Path]:
    """``write_jsonl(name, rows)``: one JSON object per line to ``tmp_path/name``; returns the path."""

    def write(name: str, rows: list) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        return path

    return write
