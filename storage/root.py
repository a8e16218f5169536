"""A store opened once for all of its collections: what a long-running server holds.

Owns: opening (or making, empty) a store directory with one database engine and, for a writer, the one writer
lock, shared by a ``Store`` per collection (``collection(name)``, kept open until the root closes); listing,
creating and dropping collections; the job log (``storage.jobs``). Every collection of a store shares its
database, blob folder and index folder; a collection's rows, index file and state files are its own, so dropping
one removes exactly those. Knows nothing of models, tokenizers or torch.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from storage.blobs import BlobIntegrityError, BlobStore
from storage.errors import CollectionNotFoundError, InvalidCollectionName, StoreError, StoreExistsError
from storage.jobs import JobLog
from storage.layout import StoreLayout
from storage.lock import WriterLock
from storage.pending import PendingBlobs
from storage.rows import collection_info
from storage.schema import Collection, Document, Memory, utc_now
from storage.state import StateFiles
from storage.store import Store, create_new, open_existing, recover_pending
from storage.types import CollectionInfo

log = logging.getLogger(__name__)

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""A collection name: what fits in a URL path segment and an OpenAI ``model`` field unchanged."""




def check_collection_name(name: str) -> str:
    if not isinstance(name, str) or NAME.fullmatch(name) is None:
        raise InvalidCollectionName(name if isinstance(name, str) else repr(name))
    return name


class StoreRoot:
    """A store directory with all its collections: one database engine, the writer lock (``write=True``), a
    ``Store`` per collection opened on first use and closed with the root. Not thread-safe."""

    def __init__(self, layout: StoreLayout, engine, lock: WriterLock | None):
        self._layout = layout
        self._engine = engine
        self._lock = lock
        self._session = sessionmaker(engine, expire_on_commit=False)
        self._open: dict[str, Store] = {}
        self.jobs = JobLog(layout.root)
        self._closed = False

    @classmethod
    def open(cls, path: Path | str, *, write: bool = False, create: bool = False,
             db_url: str | None = None) -> StoreRoot:
        """Opens the store at ``path``; with ``create`` (and ``write``) a directory that is not yet a store is made
        one, with no collection (``db_url`` names its database; SQLite inside the store by default)."""
        layout = StoreLayout(Path(path))
        if create and not layout.marker.exists():
            if not write:
                raise ValueError("create needs write")
            return cls._create(layout, db_url)
        def build(engine, lock) -> StoreRoot:
            root = cls(layout, engine, lock)
            if write:
                recover_pending(root._session, BlobStore(layout.root), PendingBlobs(layout.root))
            return root

        return open_existing(layout, write, build)

    @classmethod
    def _create(cls, layout: StoreLayout, db_url: str | None) -> StoreRoot:
        return create_new(layout, db_url, lambda engine: None, lambda engine, lock: cls(layout, engine, lock))

    @property
    def path(self) -> Path:
        return self._layout.root

    @property
    def writable(self) -> bool:
        return self._lock is not None and self._lock.held

    def close(self) -> None:
        """Closes every collection's ``Store`` (a writer saves their index files), the engine and the lock."""
        if self._closed:
            return
        self._closed = True
        try:
            for store in self._open.values():
                store.close()
        finally:
            self._open.clear()
            self._engine.dispose()
            if self._lock is not None:
                self._lock.release()

    def __enter__(self) -> StoreRoot:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- collections ---------------------------------------------------------------------------------------

    def collections(self) -> list[CollectionInfo]:
        """Every collection of the store, oldest first."""
        with self._session() as s:
            return [collection_info(c) for c in s.scalars(select(Collection).order_by(Collection.id))]

    def collection(self, name: str) -> Store:
        """The collection ``name`` (``CollectionNotFoundError`` naming those there are), opened once."""
        self._require_open()
        store = self._open.get(name)
        if store is None:
            store = Store(self._layout, self._engine, name, self._lock, owned=False)
            self._open[name] = store
        return store

    def create_collection(self, name: str, *, model_id: str, model_revision: str | None, model_fingerprint: str,
                          method: str, method_config: dict, key_dim: int | None) -> Store:
        """Adds a collection (``StoreExistsError`` when the name is taken) and opens it."""
        self._require_writable()
        check_collection_name(name)
        with Session(self._engine) as s, s.begin():
            if s.scalar(select(Collection.id).where(Collection.name == name)) is not None:
                raise StoreExistsError(self.path, f"store {self.path} already has a collection {name!r}")
            s.add(Collection(name=name, model_id=model_id, model_revision=model_revision,
                             model_fingerprint=model_fingerprint, method=method, method_config=dict(method_config),
                             key_dim=key_dim, generation=0, created_at=utc_now()))
            s.flush()
            cid = s.scalar(select(Collection.id).where(Collection.name == name))
            self._remove_files(cid)  # a dropped collection's leftovers (a crash mid-drop) under a reused id
        return self.collection(name)

    def drop_collection(self, name: str) -> int:
        """Deletes a collection: its documents and memories in one transaction, then its blob files, index file
        and method state. Returns the number of documents it held. A crash after the commit leaves blob files
        no row references, which ``memkit doctor --repair`` deletes."""
        self._require_writable()
        with self._session() as s, s.begin():
            row = s.scalar(select(Collection).where(Collection.name == name))
            if row is None:
                raise CollectionNotFoundError(self.path, name, [c.name for c in self.collections()])
            cid = row.id
            docs = select(Document.id).where(Document.collection_id == cid)
            blobs = [p for p in s.scalars(select(Memory.blob_path).where(Memory.document_id.in_(docs)))
                     if p is not None]
            n_docs = s.scalar(select(func.count()).select_from(docs.subquery()))
            s.execute(delete(Memory).where(Memory.document_id.in_(docs)))
            s.execute(delete(Document).where(Document.collection_id == cid))
            s.execute(delete(Collection).where(Collection.id == cid))
        store = self._open.pop(name, None)
        if store is not None:
            store.close()
        store_blobs = BlobStore(self._layout.root)
        for rel in blobs:
            try:
                store_blobs.delete(rel)
            except (OSError, BlobIntegrityError) as e:
                log.warning("did not delete blob %r of collection %r: %s", rel, name, e)
        self._remove_files(cid)
        return n_docs

    def _remove_files(self, cid: int) -> None:
        """A collection's index file, its sidecar and its method state files."""
        index = self._layout.index_file(cid)
        for path in (index, index.with_suffix(".json")):
            path.unlink(missing_ok=True)
        shutil.rmtree(StateFiles(self._layout.root, cid).root, ignore_errors=True)

    def _require_open(self) -> None:
        if self._closed:
            raise StoreError(f"store {self.path} is closed")

    def _require_writable(self) -> None:
        self._require_open()
        if not self.writable:
            raise StoreError(f"store {self.path} was opened read-only; open it with write=True to change it")
