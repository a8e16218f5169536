"""Helpers for the benchmark tests: small fixture files for the loaders; for the harness, the hand-made benchmark,
one torch thread, and one full run shared by the harness tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

from benchhelpers import FAST_OPTIONS, METHODS, small_benchmark
from experiments.bench.config import BenchConfig


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
