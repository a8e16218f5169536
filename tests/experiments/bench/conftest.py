"""Helpers for the benchmark harness tests: the hand-made benchmark, one torch thread, and one full run shared by
the harness tests (the loaders' small fixture files: ``write_json``, ``write_jsonl`` in tests/conftest.py)."""

from __future__ import annotations

import pytest

from benchhelpers import FAST_OPTIONS, METHODS, small_benchmark
from experiments.bench.config import BenchConfig


@pytest.fixture
def bench():
    return small_benchmark()


@pytest.fixture(scope="session")
def full_run(tiny_lm):
    """Every protocol for every method on the small benchmark, run once and shared (treat it as read-only)."""
    from experiments.bench.suite import run_benchmark

    cfg = BenchConfig(methods=METHODS, protocols=["stream", "sweep", "retention"], context_tokens=[80, 200],
                      method_options=FAST_OPTIONS, batch_size=4)
    return run_benchmark(small_benchmark(), tiny_lm, cfg)
