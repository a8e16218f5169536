"""Opening a store's database and making a new store: what ``Store`` and ``StoreRoot`` both stand on.

Owns: ``open_existing`` (the writer lock taken for a writer, the database opened, migrations applied by a
writer or checked by a reader, errors the database causes diagnosed), ``create_new`` (a new store directory: the
lock, the database made and migrated, the caller's setup, the folders and, last, the marker; everything removed
again on failure) and ``recover_pending`` (a writer opening a store deletes the blobs a crashed writer listed in
``write.pending`` and never committed). On any failure the engine and the lock are given back. Knows nothing
of collections' contents, the ``Store`` class (the caller builds it from the engine and the lock), the vector
index or models.
"""

from __future__ import annotations

import logging

from storage import queries
from storage.blobs import BlobIntegrityError, BlobStore
from storage.database import check_url, diagnose, make_engine, open_engine
from storage.errors import StoreError, StoreExistsError
from storage.layout import StoreLayout
from storage.lock import WriterLock
from storage.migrations import check_current, migrate
from storage.pending import PendingBlobs

log = logging.getLogger(__name__)


def recover_pending(session, blobs: BlobStore, pending: PendingBlobs) -> None:
    """For a writer opening a store: deletes the blobs a crashed writer listed in ``write.pending`` and never
    committed."""
    def referenced(rels: list[str]) -> set[str]:
        with session() as s:
            return queries.referenced_blobs(s, rels)

    def delete(rel: str) -> None:
        try:
            for left in blobs.with_temps(rel)[1:]:
                blobs.remove_stray(left)
            blobs.delete(rel)
        except (OSError, BlobIntegrityError) as e:
            log.warning("did not delete %r, left by an interrupted write: %s", rel, e)

    gone = pending.recover(referenced, delete)
    if gone:
        log.info("deleted %d blob(s) an interrupted write left behind", len(gone))


def open_existing(layout: StoreLayout, write: bool, build):
    """``build(engine, lock)`` on an existing store's database: the writer lock taken (``write``), migrations
    applied (writer) or checked (reader), errors the database causes diagnosed; on any failure the engine and the
    lock are given back."""
    marker = layout.read_marker()
    lock = WriterLock(layout.root).acquire() if write else None
    engine = None
    try:
        engine = open_engine(layout.db_url(marker), write=write)
        try:
            if write:
                migrate(engine, create=False)
            else:
                check_current(engine)
            return build(engine, lock)
        except StoreError:
            raise
        except Exception as e:
            diagnose(engine, e)
            raise
    except BaseException:
        if engine is not None:
            engine.dispose()
        if lock is not None:
            lock.release()
        raise


def create_new(layout: StoreLayout, db_url: str | None, setup, build):
    """A new store at ``layout`` (its directory must not exist or be empty): the writer lock taken, the database
    made (``db_url``, or SQLite inside the store) and migrated, ``setup(engine)`` run (e.g. a first collection),
    the folders and, last, the marker written; returns ``build(engine, lock)``. On any failure everything made
    is removed again."""
    if db_url is not None:
        check_url(db_url)
    made_root = layout.claim_empty()
    lock = WriterLock(layout.root).acquire()
    if layout.marker.exists():  # another process finished creating it while we waited
        lock.release()
        raise StoreExistsError(layout.root)
    engine = None
    try:
        engine = make_engine(db_url or layout.default_db_url())
        migrate(engine)
        setup(engine)
        layout.blob_dir.mkdir(mode=0o755, exist_ok=True)
        layout.index_dir.mkdir(mode=0o755, exist_ok=True)
        layout.write_marker(db_url)  # last: a directory is a store once its marker exists
        return build(engine, lock)
    except BaseException:
        if engine is not None:
            engine.dispose()
        lock.release()
        layout.remove_contents(remove_root=made_root)
        raise
