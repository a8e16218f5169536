"""The collection's vector index in memory, kept in step with SQL and with its file.

Owns: loading the index only when something needs it (a search, a write of keys, a check: listing, showing,
removing or counting documents never reads it), deciding whether ``index/<collection_id>.faiss`` can be trusted
(its sidecar's generation and dimension must equal ``collections.generation`` and ``key_dim``, its bytes their
checksum, its count the index's), rebuilding the index from the keys in SQL when it cannot, and when to write
the file after a commit. A commit made while the index is not loaded (a removal, a document without keys)
moves a current sidecar forward instead, listing the removed ids, so a small change never costs a load and a
save of a large index. Small indexes are saved after
every write; a large one is saved when the time since its last save is at least 20 times what saving took,
which bounds saving to ~5% of ingest time instead of making ingest quadratic, and always on close. A file left
behind by that policy or by a crash is simply stale: the next open rebuilds it from SQL. Knows nothing of
blobs, documents' contents or models.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from storage import queries
from storage.index import IndexFileError, VectorIndex, index_file_present, read_sidecar, write_sidecar
from storage.schema import Collection

log = logging.getLogger(__name__)

EAGER_SAVE_BYTES = 32 << 20
"""Indexes up to this many bytes of vectors are saved after every write."""


class IndexKeeper:
    """Holds ``index`` (None until loaded, or while the collection has no key dimension) and the generation it
    reflects; ``get()`` loads it on first use."""

    def __init__(self, session: Callable[[], Session], collection_id: int, path: Path, *, writable: bool):
        self._session = session
        self._collection_id = collection_id
        self.path = path
        self.writable = writable
        self.index: VectorIndex | None = None
        self.loaded = False
        with session() as s:
            self.generation, self.key_dim = self._state(s)
        self.dirty = False  # the file is behind the index in memory
        self.file_problem: str | None = None  # why the file was not used at the last load, if it was damaged
        self._last_save = (0.0, 0.0)  # (monotonic time of the last save, seconds it took)

    @property
    def ntotal(self) -> int:
        return 0 if self.index is None else self.index.ntotal

    def get(self) -> VectorIndex | None:
        """The index (None while the collection has no keys' dimension), loaded on first use."""
        if not self.loaded:
            self.load()
        return self.index

    def ensure(self, dim: int) -> VectorIndex:
        """The index, made empty with ``dim`` if the collection had none."""
        self.get()
        if self.index is None:
            self.index = VectorIndex(dim)
            self.key_dim = dim
        return self.index

    def load(self) -> None:
        """Loads the file when it matches SQL, else rebuilds from SQL (and writes the file when writable). A
        reader that finds the file damaged, or an index file without a usable sidecar (an older memkit's),
        says so once in a warning; a file merely behind the database (a writer saves large indexes now and
        then, a crash leaves the last one) is rebuilt without one."""
        self.file_problem = None
        for _ in range(3):  # a writer may replace the pair while we read it: read again
            with self._session() as s:
                generation, dim = self._state(s)
            meta = read_sidecar(self.path)
            if dim is not None and meta is None and index_file_present(self.path):
                self.file_problem = (f"index file {self.path} has no usable sidecar (damaged, or written by an "
                                     f"older memkit without a checksum)")
                break
            if dim is None or meta is None or meta["generation"] != generation or meta["dim"] != dim:
                break
            try:
                index = VectorIndex.load(self.path, meta)
            except IndexFileError as e:
                with self._session() as s:
                    moved = self._state(s)[0] != generation
                if moved or read_sidecar(self.path) != meta:  # a writer saved a newer file meanwhile
                    continue
                self.file_problem = f"index file {self.path} {e}"
                break
            if read_sidecar(self.path) != meta:
                continue
            self.index, self.generation, self.key_dim, self.loaded = index, generation, dim, True
            self.dirty = bool(meta["removed"])  # the file still holds removed vectors: a writer compacts it
            return
        if self.file_problem and not self.writable:  # a writer rewrites the file at once: nothing to say
            log.warning("%s; searching the keys the database holds instead (`memkit reindex` rewrites it)",
                        self.file_problem)
        self.rebuild()
        if self.writable:
            self.save()

    def rebuild(self) -> None:
        """Replaces the index with one built from every key in SQL, read in one transaction with its generation."""
        with self._session() as s, s.begin():
            generation, dim = self._state(s)
            index = None if dim is None else VectorIndex(dim)
            if index is not None:
                for ids, vecs in queries.keys(s, self._collection_id):
                    index.add(ids, vecs)
        self.index, self.generation, self.key_dim, self.loaded = index, generation, dim, True
        self.dirty = True

    def refresh(self) -> None:
        """For a reader: loads on first use, then follows a writer's commits by reloading when SQL's generation
        has moved."""
        if not self.loaded:
            self.load()
            return
        with self._session() as s:
            generation, _ = self._state(s)
        if generation != self.generation:
            self.load()

    def committed(self, generation: int, removed: Sequence[int] = ()) -> None:
        """Records a commit that moved SQL from ``generation - 1`` to ``generation`` (removing the keys of
        ``removed``). A loaded index is saved when the policy says so; otherwise a sidecar that was current is
        moved forward to ``generation`` with ``removed`` listed, and the large file is left as it is."""
        self.generation = generation
        if not self.loaded:
            meta = read_sidecar(self.path)
            if meta is not None and meta["generation"] == generation - 1:
                meta["generation"] = generation
                meta["removed"] = sorted(set(meta["removed"]) | {int(i) for i in removed})
                try:
                    write_sidecar(self.path, meta)
                except OSError as e:  # the commit stands; the stale file is rebuilt on the next load
                    log.warning("could not update index sidecar of %s: %s", self.path, e)
            return
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

    def count(self) -> int:
        """Vectors the index holds, without loading it: the loaded index's count, a current file's (less its
        removed ids), or else the keys SQL holds (what the next load rebuilds)."""
        if self.loaded:
            return self.ntotal
        with self._session() as s:
            generation, dim = self._state(s)
            meta = read_sidecar(self.path)
            if meta is not None and dim is not None and meta["generation"] == generation and meta["dim"] == dim:
                return meta["count"] - len(set(meta["removed"]))
            return queries.key_count(s, self._collection_id)

    def ids(self) -> np.ndarray:
        index = self.get()
        return np.empty(0, np.int64) if index is None else index.ids()

    def _state(self, s: Session) -> tuple[int, int | None]:
        row = s.execute(
            select(Collection.generation, Collection.key_dim).where(Collection.id == self._collection_id)
        ).one()
        return row.generation, row.key_dim
