"""The collection's vector index in memory, kept in step with SQL and with its file.

Owns: deciding whether ``index/<collection_id>.faiss`` can be trusted (its sidecar's generation and dimension
must equal ``collections.generation`` and ``key_dim``, its count must equal the index's), rebuilding the index
from the keys in SQL when it cannot, and when to write the file after a commit. Small indexes are saved after
every write; a large one is saved when the time since its last save is at least 20 times what saving took,
which bounds saving to ~5% of ingest time instead of making ingest quadratic, and always on close. A file left
behind by that policy or by a crash is simply stale: the next open rebuilds it from SQL. Knows nothing of
blobs, documents' contents or models.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from storage import queries
from storage.index import VectorIndex, read_sidecar
from storage.schema import Collection

log = logging.getLogger(__name__)

EAGER_SAVE_BYTES = 32 << 20
"""Indexes up to this many bytes of vectors are saved after every write."""


class IndexKeeper:
    """Holds ``index`` (None until the collection has a key dimension) and the generation it reflects."""

    def __init__(self, session: Callable[[], Session], collection_id: int, path: Path):
        self._session = session
        self._collection_id = collection_id
        self.path = path
        self.index: VectorIndex | None = None
        self.key_dim: int | None = None
        self.generation = 0
        self.dirty = False  # the file is behind the index in memory
        self._last_save = (0.0, 0.0)  # (monotonic time of the last save, seconds it took)

    @property
    def ntotal(self) -> int:
        return 0 if self.index is None else self.index.ntotal

    def ensure(self, dim: int) -> VectorIndex:
        """The index, made empty with ``dim`` if the collection had none."""
        if self.index is None:
            self.index = VectorIndex(dim)
            self.key_dim = dim
        return self.index

    def load(self, *, save: bool) -> None:
        """Loads the file when it matches SQL, else rebuilds from SQL (and writes the file when ``save``)."""
        with self._session() as s:
            generation, dim = self._state(s)
        index = None
        meta = read_sidecar(self.path)
        if dim is not None and meta is not None and meta["generation"] == generation and meta["dim"] == dim:
            try:
                index = VectorIndex.load(self.path)
            except (OSError, ValueError) as e:
                log.warning("index %s is unreadable, rebuilding it: %s", self.path, e)
            unchanged = read_sidecar(self.path) == meta  # a writer may have replaced the pair while we read
            if index is not None and not (unchanged and index.ntotal == meta["count"] and index.dim == dim):
                index = None
        if index is not None:
            self.index, self.generation, self.key_dim = index, generation, dim
            self.dirty = False
            return
        self.rebuild()
        if save:
            self.save()

    def rebuild(self) -> None:
        """Replaces the index with one built from every key in SQL, read in one transaction with its generation."""
        with self._session() as s, s.begin():
            generation, dim = self._state(s)
            index = None if dim is None else VectorIndex(dim)
            if index is not None:
                for ids, vecs in queries.keys(s, self._collection_id):
                    index.add(ids, vecs)
        self.index, self.generation, self.key_dim = index, generation, dim
        self.dirty = True

    def refresh(self) -> None:
        """For a reader: follows a writer's commits by reloading when SQL's generation has moved."""
        with self._session() as s:
            generation, _ = self._state(s)
        if generation != self.generation:
            self.load(save=False)

    def committed(self, generation: int) -> None:
        """Records a commit that moved SQL to ``generation``; saves the file when the policy says so."""
        self.generation = generation
        self.dirty = True
        if self.index is None:
            return
        last_at, cost = self._last_save
        if self.index.ntotal * self.index.dim * 4 <= EAGER_SAVE_BYTES or time.monotonic() - last_at >= 20 * cost:
            try:
                self.save()
            except OSError as e:  # the commit stands; the stale file is rebuilt on the next open
                log.warning("could not save index file %s: %s", self.path, e)

    def save(self) -> None:
        if self.index is not None:
            start = time.monotonic()
            self.index.save(self.path, self.generation)
            self._last_save = (time.monotonic(), time.monotonic() - start)
        self.dirty = False

    def ids(self) -> np.ndarray:
        return np.empty(0, np.int64) if self.index is None else self.index.ids()

    def _state(self, s: Session) -> tuple[int, int | None]:
        row = s.execute(
            select(Collection.generation, Collection.key_dim).where(Collection.id == self._collection_id)
        ).one()
        return row.generation, row.key_dim
