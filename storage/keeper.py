"""The collection's vector index in memory, kept in step with SQL and with its file.

Owns: loading the index only when something needs it (a search, a write of keys, a check: listing, showing,
removing or counting documents never reads it), deciding whether ``index/<collection_id>.faiss`` can be used
(its sidecar's dimension must equal ``key_dim``, its bytes their checksum, its count the index's), catching a
file or an index in memory up with SQL, rebuilding the index from the keys in SQL when it cannot be caught up,
choosing the kind of index (``collections.index_spec``: flat while small, HNSW beyond, or as asked), and when
to write the file after a commit.

Catching up relies on the index holding only committed keys (the store adds and removes them after its
commits) and on committed ids never being reused and growing with every write (one writer at a time):
the keys an index lacks are exactly SQL's keys past the largest id it holds, and what it holds beyond SQL
(removed since) shows as a count that differs, then found by comparing ids. So a file behind the database
is loaded and brought forward, never rebuilt, and a reader follows a writer's commits at the cost of what
changed. The file is therefore saved only when the changes since the last save reach half of what it
holds (a quarter on close): bytes written for the index stay a small multiple of the keys' own bytes, however
the store grows, instead of a full rewrite per commit. A commit made while the index is not loaded (a
removal, a document without keys) moves a current sidecar forward instead, listing the removed ids. Knows
nothing of blobs, documents' contents or models.
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
from storage.index import IndexFileError, IndexSpec, VectorIndex, index_file_present, read_sidecar, write_sidecar
from storage.schema import Collection

log = logging.getLogger(__name__)

SAVE_GROWTH = 0.5
"""While a writer works, the file is saved once the vectors added or removed since its last save reach this
fraction of it."""
CLOSE_GROWTH = 0.25
"""On close, the file is saved once those changes reach this fraction of it (a writer that stops sooner leaves
them to the next load's catch-up, which reads at most this fraction of the keys from SQL)."""


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
            self.spec = self._spec(s)
        self.dirty = False  # the file is behind the index in memory
        self.file_problem: str | None = None  # why the file was not used at the last load, if it was damaged
        self._saved = 0  # vectors in the file when it was last saved or loaded
        self._changes = 0  # vectors added or removed since

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
            self.index = VectorIndex(dim, kind=self.spec.kind_for(0, dim), spec=self.spec)
            self.key_dim = dim
        return self.index

    def load(self) -> None:
        """Loads the file when its dimension matches SQL and catches it up with SQL's commits since it was
        written, else rebuilds from SQL (and writes the file when writable). A reader that finds the file
        damaged, or an index file without a usable sidecar (an older memkit's), says so once in a warning; a
        file merely behind the database (the writer saves now and then, a crash leaves the last one) is caught
        up without one."""
        self.file_problem = None
        for attempt in range(3):  # a writer may replace the pair while we read it: read again
            with self._session() as s:
                generation, dim = self._state(s)
                self.spec = self._spec(s)
            meta = read_sidecar(self.path)
            if dim is not None and meta is None and index_file_present(self.path):
                self.file_problem = (f"index file {self.path} has no usable sidecar (damaged, or written by an "
                                     f"older memkit without a checksum)")
                break
            if meta is not None and meta["generation"] > generation:  # a writer's newer file and commit: read again
                time.sleep(0.05 * (attempt + 1))
                continue
            if dim is None or meta is None or meta["dim"] != dim:
                break
            try:
                index = VectorIndex.load(self.path, meta, spec=self.spec)
            except IndexFileError as e:
                # A writer replaces the file, then its sidecar: between the two renames the new file meets the
                # old sidecar. Wait a little and read the pair again before calling the file damaged.
                if attempt < 2:
                    time.sleep(0.05 * (attempt + 1))
                    continue
                self.file_problem = f"index file {self.path} {e}"
                break
            if read_sidecar(self.path) != meta:
                continue
            self.index, self.generation, self.key_dim, self.loaded = index, meta["generation"], dim, True
            self._saved, self._changes = meta["count"], len(meta["removed"])  # removed ids count as changes:
            self.dirty = bool(meta["removed"])                                # the policy compacts them in time
            if meta["generation"] != generation and not self.catch_up():
                break
            self._shape()
            return
        if self.file_problem and not self.writable:  # a writer rewrites the file at once: nothing to say
            log.warning("%s; searching the keys the database holds instead (`memkit reindex` rewrites it)",
                        self.file_problem)
        self.rebuild()
        if self.writable:
            self.save()

    def catch_up(self) -> bool:
        """Brings the loaded index up to SQL's current generation: adds the keys past the largest id it holds
        and removes the ids SQL no longer holds. False (nothing changed) when it cannot (the dimension
        changed, or what it holds does not add up: it must be rebuilt)."""
        index = self.index
        with self._session() as s, s.begin():
            generation, dim = self._state(s)
            if index is None or dim != index.dim:
                return False
            new_ids, new_vecs = [], []
            for ids, vecs in queries.keys(s, self._collection_id, after=index.max_id()):
                new_ids.append(np.asarray(ids, np.int64))
                new_vecs.append(vecs)
            count = queries.key_count(s, self._collection_id)
            gone = np.empty(0, np.int64)
            if count != index.ntotal + sum(len(i) for i in new_ids):
                sql_ids = queries.key_ids(s, self._collection_id)
                gone = np.setdiff1d(index.ids(), sql_ids)
        if count != index.ntotal - len(gone) + sum(len(i) for i in new_ids):
            return False
        index.remove(gone)
        for ids, vecs in zip(new_ids, new_vecs):
            index.add(ids, vecs)
        changed = len(gone) + sum(len(i) for i in new_ids)
        self._changes += changed
        self.generation = generation
        self.dirty = self.dirty or changed > 0
        if self.writable and not self.dirty:  # the file holds just these vectors: only its generation moves
            self._move_sidecar(generation, lambda meta: meta["count"] == index.ntotal + index.tombstones
                               and meta["generation"] < generation and meta["dim"] == index.dim)
        return True

    def _move_sidecar(self, generation: int, current, removed: Sequence[int] = ()) -> None:
        """Moves the sidecar forward to ``generation`` (listing ``removed``) when ``current(meta)`` says its file
        still holds what the index does; a failure is logged (the file is caught up on the next load)."""
        meta = read_sidecar(self.path)
        if meta is None or not current(meta):
            return
        meta["generation"] = generation
        meta["removed"] = sorted(set(meta["removed"]) | {int(i) for i in removed})
        try:
            write_sidecar(self.path, meta)
        except OSError as e:
            log.warning("could not update index sidecar of %s: %s", self.path, e)

    def _shape(self) -> None:
        """Gives the index the kind its spec asks for at its size (flat -> HNSW as the store grows; whatever
        ``reindex`` set) and drops an HNSW graph's tombstones once they are many. Writers only: a reader uses
        the file as the writer left it."""
        index = self.index
        if index is None or not self.writable:
            return
        kind = self.spec.kind_for(index.ntotal, index.dim, index.kind)
        if kind != index.kind or (index.kind == "hnsw" and index.needs_compaction()):
            log.info("building a %s index over %d vectors (was %s)", kind, index.ntotal, index.kind)
            self.index = index.rebuilt(kind, self.spec)
            self._changes = max(self._changes, self.index.ntotal)  # the file is another index now: save it
            self.dirty = True

    def rebuild(self) -> None:
        """Replaces the index with one built from every key in SQL, read in one transaction with its generation,
        of the kind the spec asks for at that size."""
        with self._session() as s, s.begin():
            generation, dim = self._state(s)
            self.spec = self._spec(s)
            index = None
            if dim is not None:
                count = queries.key_count(s, self._collection_id)
                index = VectorIndex(dim, kind=self.spec.kind_for(count, dim), spec=self.spec)
                for ids, vecs in queries.keys(s, self._collection_id):
                    index.add(ids, vecs)
        self.index, self.generation, self.key_dim, self.loaded = index, generation, dim, True
        self.dirty = True
        self._changes = max(1, 0 if index is None else index.ntotal)

    def refresh(self) -> None:
        """For a reader: loads on first use, then follows a writer's commits by catching up with what changed
        (or loading afresh when that is not possible)."""
        if not self.loaded:
            self.load()
            return
        with self._session() as s:
            generation, _ = self._state(s)
        if generation != self.generation and not self.catch_up():
            self.load()

    def committed(self, generation: int, removed: Sequence[int] = (), changed: int = 0) -> None:
        """Records a commit that moved SQL from ``generation - 1`` to ``generation``, adding or removing
        ``changed`` keys (the keys of ``removed`` among them). A loaded index is saved when the policy says so;
        otherwise a sidecar that was current is moved forward to ``generation`` with ``removed`` listed, and the
        file is left as it is."""
        self.generation = generation
        changed = max(changed, len(removed))
        if not self.loaded or (changed == 0 and not self.dirty):  # the file, if current, stays current
            self._move_sidecar(generation, lambda meta: meta["generation"] == generation - 1, removed)
            return
        if changed == 0:
            return
        self.dirty = True
        self._changes += changed
        if self.index is None:
            return
        self._shape()
        self.save_if_due()

    def save_if_due(self, *, closing: bool = False) -> None:
        """Saves the file when the changes since its last save reach ``SAVE_GROWTH`` of it (``CLOSE_GROWTH`` on
        close); a failure is logged: the commits stand, and the next load catches the file up."""
        if self._changes >= max(1, (CLOSE_GROWTH if closing else SAVE_GROWTH) * self._saved):
            try:
                self.save()
            except OSError as e:
                log.warning("could not save index file %s: %s", self.path, e)

    def save(self) -> None:
        if self.index is not None:
            self.index.save(self.path, self.generation)
            self._saved, self._changes = self.index.ntotal + self.index.tombstones, 0
        self.dirty = False

    def set_spec(self, spec: IndexSpec) -> None:
        """Records ``spec`` as the collection's index (the caller rebuilds)."""
        with self._session() as s, s.begin():
            s.get(Collection, self._collection_id).index_spec = spec.to_dict()
        self.spec = spec

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

    def forget(self) -> None:
        """Drops the index in memory, unsaved: after a write whose outcome the index may not reflect, the next
        use loads the file and catches it up with SQL."""
        self.index, self.loaded, self.dirty = None, False, False
        self._changes = 0

    def kind(self) -> str | None:
        """The kind of index held (``flat``/``hnsw``), read from the file's sidecar when not loaded; None if none."""
        if self.loaded:
            return None if self.index is None else self.index.kind
        meta = read_sidecar(self.path)
        return None if meta is None else meta["kind"]

    def ids(self) -> np.ndarray:
        index = self.get()
        return np.empty(0, np.int64) if index is None else index.ids()

    def _spec(self, s: Session) -> IndexSpec:
        raw = s.scalar(select(Collection.index_spec).where(Collection.id == self._collection_id))
        try:
            return IndexSpec.from_dict(raw)
        except (TypeError, ValueError) as e:  # a hand-edited row: say so, search on with the default
            log.warning("collection %s has an unusable index_spec (%s); using the default", self._collection_id, e)
            return IndexSpec()

    def _state(self, s: Session) -> tuple[int, int | None]:
        row = s.execute(
            select(Collection.generation, Collection.key_dim).where(Collection.id == self._collection_id)
        ).one()
        return row.generation, row.key_dim
