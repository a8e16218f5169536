"""Plain helpers for the store's tests (random unit keys, small documents, file listings).

A uniquely named module rather than ``conftest`` so that test files can import it without clashing with the
conftest files of other test folders.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from storage import DocumentIn, RecordIn

DIM = 16

sqlite_only = pytest.mark.parametrize("db", ["sqlite"], indirect=True)
"""For a test about SQLite itself (its file, its journal, its damage): not run on PostgreSQL."""


def unit_rows(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    """``n`` random L2-normalised float32 rows."""
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def doc(i: int, **kw) -> DocumentIn:
    return DocumentIn(text=f"document number {i}: some text about item {i}.", source=f"file{i}.txt", **kw)


def keyed(key: np.ndarray, kind: str = "chunk", **kw) -> RecordIn:
    return RecordIn(kind=kind, key=key, **kw)


def store_db_url(root: Path) -> str:
    """The database URL of the store at ``root`` (its ``store.json``'s, or its own SQLite file), for a test
    that looks at the rows with an engine of its own (made with ``create_engine``: no writer lock)."""
    marker = json.loads((Path(root) / "store.json").read_text())
    return marker["db_url"] or f"sqlite:///{Path(root).resolve() / 'memkit.db'}"


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def brute_force(keys: np.ndarray, ids: np.ndarray, query: np.ndarray, k: int) -> tuple[list[int], np.ndarray]:
    """Exact top-``k`` ids and scores by inner product, best first: the ground truth for search."""
    scores = keys @ query
    order = np.argsort(-scores, kind="stable")[:k]
    return [int(i) for i in ids[order]], scores[order]
