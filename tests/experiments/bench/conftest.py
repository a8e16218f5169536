"""Helpers for the benchmark-loader tests: write small fixture files in a test's temporary directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest


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
