"""The ``Store``'s upkeep: its numbers, its health, and mending what can be mended.

Owns: ``StoreUpkeep``, the methods of ``Store`` behind ``memkit stats`` and ``memkit doctor``: ``stats``
(counts and sizes, ``health``), ``verify`` (the checks, ``maintenance``; a writer first saves an index it holds
unsaved, so what still differs is a problem), ``remove_orphans`` and ``repair`` (leftovers of interrupted writes
deleted, a missing, stale or damaged index file rebuilt with ``reindex``). The checks and what they mean while
another process writes are ``health``'s and ``maintenance``'s; this only hands them the store's parts. A mixin
of ``Store``, using its ``_session``, ``_engine``, ``_info``, ``_layout``, ``_keeper``, ``_blobs``,
``_pending``, ``_state``, ``_require_writable`` and ``reindex`` (``StoreSearch``). Knows nothing of models.
"""

from __future__ import annotations

import logging

from storage import health, maintenance
from storage.blobs import BlobIntegrityError
from storage.database import guarded
from storage.lock import WriterLock
from storage.types import HealthReport

log = logging.getLogger(__name__)


class StoreUpkeep:
    """Counting, checking and repairing the collection (mixed into ``Store``)."""

    @guarded
    def stats(self) -> dict:
        """Counts and sizes: documents, memories (and by kind), streams, generation, index vectors, and bytes:
        ``blob_bytes`` (payload files), ``key_bytes`` (keys in SQL), ``text_bytes`` (document texts, UTF-8),
        ``state_bytes`` (method state files), ``db_bytes`` (the SQLite file and its WAL, or the PostgreSQL
        database's size)."""
        with self._session() as s:
            out = health.collection_stats(s, self._info.id)
        out.update(
            index_vectors=self._keeper.count(),
            index_kind=self._keeper.kind(),
            index_spec=self._keeper.spec.kind,
            key_dim=self._keeper.key_dim,
            db_bytes=health.db_bytes(self._engine),
            state_bytes=self._state.total_bytes(),
            model_id=self._info.model_id,
            method=self._info.method,
        )
        return out

    @guarded
    def verify(self, check_blobs: bool = True, sample: int = 1000) -> HealthReport:
        """Checks the store: the database (SQLite's quick check), every blob of the collection (read and
        checksummed, or only found without ``check_blobs``), method state files, leftovers no memory references,
        and the index file against SQL (ids, and ``sample`` of its vectors against the keys SQL holds). While
        another process writes, what its work in progress would make look wrong (a lagging index file, blobs not
        yet committed) is a note, not a problem. Changes nothing (a writer first saves an index it holds
        unsaved)."""
        if self.writable and self._keeper.loaded and self._keeper.dirty:
            try:
                self._keeper.save()  # bring the file up to date first; what still differs is a problem
            except OSError as e:
                log.warning("could not save index file for %s: %s", self.path, e)
        return maintenance.verify(self._session, self._engine, self._info.id, self._blobs, self._state,
                                  self._keeper.path, WriterLock(self._layout.root),
                                  [left for rel in self._pending.read() for left in self._safe_temps(rel)],
                                  writer=self.writable, check_blobs=check_blobs, sample=sample)

    @guarded
    def remove_orphans(self) -> list[str]:
        """Deletes what interrupted writes left behind: blob files no memory references and temp files of atomic
        writes; returns their paths relative to the store. Only the writer may: another writer's fresh blobs are
        unreferenced until its commit."""
        self._require_writable()
        removed = maintenance.remove_orphans(self._session, self._blobs, self._layout, self._state.root)
        self._pending.clear()
        return removed

    @guarded
    def repair(self) -> list[str]:
        """Rebuilds what is derived and removes leftovers: orphan blobs and temp files go, and the index file is
        rewritten from SQL when it is missing, stale, damaged or disagrees. Documents whose blobs are damaged
        cannot be repaired here (their text must be ingested again). Returns one line per thing done."""
        self._require_writable()
        done = [f"deleted {rel} (referenced by nothing)" for rel in self.remove_orphans()]
        if maintenance.index_needs_rebuild(self._session, self._info.id, self._keeper.path):
            done.append(f"rebuilt the index from the database: {self.reindex()} vectors")
        return done

    def _safe_temps(self, rel: str) -> list[str]:
        try:
            return self._blobs.with_temps(rel)
        except BlobIntegrityError:  # a line memkit did not write: judged like any other file
            return []
