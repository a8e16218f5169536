"""The ``Store`` facade: the one object the rest of memkit uses to keep documents and their memories.

Owns: the ``Store`` class and its public surface, opening and creating one collection's store (through
``opening``), closing it, what it is (``path``, ``info``, ``writable``, ``check_model``) and the named method
states a collection keeps beside its documents (``save_state``/``load_state``). Its other methods live with
their concept, each a mixin of ``Store``: ``store_read`` (documents and memories), ``store_write`` (the
transactional write path: blobs, SQL rows, index entries, all or nothing; removals), ``store_search`` (search
joined with SQL rows, the index as a whole) and ``store_upkeep`` (stats, verify, repair). A store holds one
collection per ``Store`` object. The SQL commit is the visibility point: readers never see half a document, and
search drops index ids whose rows are gone. Knows nothing of models, tokenizers or torch; keys and payloads are
numpy arrays made by someone else.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from storage.blobs import BlobStore
from storage.errors import (
    CollectionNotFoundError,
    CorruptStateError,
    ModelMismatchError,
    StoreError,
    StoreExistsError,
)
from storage.keeper import IndexKeeper
from storage.layout import StoreLayout
from storage.lock import WriterLock
from storage.opening import create_new, open_existing, recover_pending
from storage.pending import PendingBlobs
from storage.rows import collection_info
from storage.schema import Collection, utc_now
from storage.state import StateFiles, StateIntegrityError
from storage.store_read import MAX_ID, StoreReads
from storage.store_search import StoreSearch
from storage.store_upkeep import StoreUpkeep
from storage.store_write import StoreWrites
from storage.types import CollectionInfo

__all__ = ["MAX_ID", "Store", "create_new", "open_existing", "recover_pending"]

log = logging.getLogger(__name__)


class Store(StoreWrites, StoreReads, StoreSearch, StoreUpkeep):
    """A memkit store opened for reading, or for writing by the one process holding its lock.

    Build with ``Store.create`` or ``Store.open`` (or ``StoreRoot.collection`` for one of several collections
    sharing a database engine and the writer lock); close with ``close()`` or a ``with`` block. Not thread-safe.
    """

    def __init__(self, layout: StoreLayout, engine: Engine, collection: str, lock: WriterLock | None, *,
                 owned: bool = True):
        self._owned = owned  # False: the engine and the lock belong to a StoreRoot, which closes them
        self._layout = layout
        self._engine = engine
        self._guarding = False
        self._session = sessionmaker(engine, expire_on_commit=False)
        self._lock = lock
        self._blobs = BlobStore(layout.root)
        self._pending = PendingBlobs(layout.root)
        with self._session() as s:
            row = s.scalar(select(Collection).where(Collection.name == collection))
            if row is None:
                names = list(s.scalars(select(Collection.name).order_by(Collection.id)))
                raise CollectionNotFoundError(layout.root, collection, names)
            self._info = collection_info(row)
        self._keeper = IndexKeeper(self._session, self._info.id, layout.index_file(self._info.id),
                                   writable=self.writable)
        self._state = StateFiles(layout.root, self._info.id)
        self._closed = False

    # ---- opening and closing -------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: Path | str,
        *,
        model_id: str,
        model_revision: str | None,
        model_fingerprint: str,
        method: str,
        method_config: dict,
        key_dim: int | None,
        db_url: str | None = None,
        collection: str = "default",
    ) -> Store:
        """Makes a new store at ``path`` (which must not exist or be empty) and opens it for writing."""
        layout = StoreLayout(Path(path))

        def setup(engine) -> None:
            with Session(engine) as s, s.begin():
                if s.scalar(select(Collection.id).where(Collection.name == collection)) is not None:
                    raise StoreExistsError(
                        layout.root, f"the database already holds a collection {collection!r}; choose another "
                                     f"database"
                    )
                s.add(Collection(name=collection, model_id=model_id, model_revision=model_revision,
                                 model_fingerprint=model_fingerprint, method=method,
                                 method_config=dict(method_config), key_dim=key_dim, generation=0,
                                 created_at=utc_now()))

        return create_new(layout, db_url, setup, lambda engine, lock: cls(layout, engine, collection, lock))

    @classmethod
    def open(cls, path: Path | str, *, write: bool = False, collection: str = "default") -> Store:
        """Opens an existing store; ``write=True`` takes the writer lock (``StoreLockedError`` if held).

        Opening never creates anything: a missing, emptied or damaged database is refused with a store error.
        A writer applies pending migrations; a reader changes nothing and refuses a database that needs them.
        The vector index is not read until something searches or writes keys."""
        layout = StoreLayout(Path(path))

        def build(engine, lock) -> Store:
            store = cls(layout, engine, collection, lock)
            if write:
                store._recover_pending()
            return store

        return open_existing(layout, write, build)

    def close(self) -> None:
        """Saves a pending index file (writer), disposes the engine and releases the lock. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.writable and self._keeper.loaded and self._keeper.dirty:
                self._keeper.save_if_due(closing=True)
        except OSError as e:  # the commits stand; the stale file is rebuilt on the next open
            log.warning("could not save index file for %s: %s", self.path, e)
        finally:
            if self._owned:
                self._engine.dispose()
                if self._lock is not None:
                    self._lock.release()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "write" if self.writable else "read"
        return f"Store({str(self.path)!r}, collection={self._info.name!r}, {mode})"

    @property
    def path(self) -> Path:
        return self._layout.root

    @property
    def info(self) -> CollectionInfo:
        return replace(self._info, key_dim=self._keeper.key_dim)

    @property
    def writable(self) -> bool:
        return self._lock is not None and self._lock.held

    def check_model(self, model_id: str, model_fingerprint: str) -> None:
        """Raises ``ModelMismatchError`` unless ``model_fingerprint`` is the one the collection was built with."""
        if model_fingerprint != self._info.model_fingerprint:
            raise ModelMismatchError(self.path, self._info.model_id, model_id)

    # ---- method state --------------------------------------------------------------------------------------

    def save_state(self, name: str, tensors: dict[str, np.ndarray]) -> None:
        """Keeps ``tensors`` as this collection's state ``name`` (e.g. a method's trained weights), replacing any
        earlier one atomically; a checksum of the contents is kept in the file."""
        self._require_writable()
        self._state.save(name, tensors)

    def load_state(self, name: str) -> dict[str, np.ndarray] | None:
        """The arrays last saved as state ``name``, or None; ``CorruptStateError`` when they fail their checksum."""
        try:
            return self._state.load(name)
        except StateIntegrityError as e:
            raise CorruptStateError(name, e.path, e.reason) from e

    # ---- internals -----------------------------------------------------------------------------------------

    def _recover_pending(self) -> None:
        """For a writer opening the store: deletes the blobs a crashed writer listed and never committed."""
        recover_pending(self._session, self._blobs, self._pending)

    def _require_writable(self) -> None:
        if self._closed:
            raise StoreError(f"store {self.path} is closed")
        if not self.writable:
            raise StoreError(f"store {self.path} was opened read-only; open it with write=True to change it")
