"""The ``Store`` facade: the one object the rest of memkit uses to keep documents and their memories.

Owns: opening and creating a store directory, the transactional write path (blobs, SQL rows, index entries:
all or nothing), reads, search joined with SQL rows, keeping the FAISS index file in step with SQL, and the
named method states a collection keeps beside its documents (``save_state``/``load_state``). A store
holds one collection per ``Store`` object. The SQL commit is the visibility point: readers never see half a
document, and search drops index ids whose rows are gone. Knows nothing of models, tokenizers or torch; keys
and payloads are numpy arrays made by someone else.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from storage import health, queries
from storage.blobs import BlobIntegrityError, BlobStore
from storage.errors import (
    CollectionNotFoundError,
    CorruptBlobError,
    CorruptStateError,
    DimensionMismatchError,
    DocumentNotFoundError,
    MemoryNotFoundError,
    ModelMismatchError,
    StoreError,
    StoreExistsError,
)
from storage.keeper import IndexKeeper
from storage.layout import StoreLayout
from storage.lock import WriterLock
from storage.migrations import migrate
from storage.records import PreparedRecords, prepare_records
from storage.rows import collection_info, memory_row, new_memory
from storage.schema import Collection, Document, Memory, decode_key, make_engine, utc_now
from storage.search import search_joined
from storage.state import StateFiles, StateIntegrityError
from storage.types import AddResult, CollectionInfo, DocumentIn, DocumentRow, Hit, MemoryRow, RecordIn

log = logging.getLogger(__name__)


class Store:
    """A memkit store opened for reading, or for writing by the one process holding its lock.

    Build with ``Store.create`` or ``Store.open``; close with ``close()`` or a ``with`` block. Not thread-safe.
    """

    def __init__(self, layout: StoreLayout, engine: Engine, collection: str, lock: WriterLock | None):
        self._layout = layout
        self._engine = engine
        self._session = sessionmaker(engine, expire_on_commit=False)
        self._lock = lock
        self._blobs = BlobStore(layout.root)
        with self._session() as s:
            row = s.scalar(select(Collection).where(Collection.name == collection))
            if row is None:
                names = list(s.scalars(select(Collection.name).order_by(Collection.id)))
                raise CollectionNotFoundError(layout.root, collection, names)
            self._info = collection_info(row)
        self._keeper = IndexKeeper(self._session, self._info.id, layout.index_file(self._info.id))
        self._state = StateFiles(layout.root, self._info.id)
        self._closed = False
        self._keeper.load(save=self.writable)

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
        root = layout.root
        made_root = layout.claim_empty()
        lock = WriterLock(root).acquire()
        if layout.marker.exists():  # another process finished creating it while we waited
            lock.release()
            raise StoreExistsError(root)
        engine = None
        try:
            engine = make_engine(db_url or layout.default_db_url())
            migrate(engine)
            with Session(engine) as s, s.begin():
                if s.scalar(select(Collection.id).where(Collection.name == collection)) is not None:
                    raise StoreExistsError(
                        root, f"the database already holds a collection {collection!r}; choose another database"
                    )
                s.add(
                    Collection(
                        name=collection,
                        model_id=model_id,
                        model_revision=model_revision,
                        model_fingerprint=model_fingerprint,
                        method=method,
                        method_config=dict(method_config),
                        key_dim=key_dim,
                        generation=0,
                        created_at=utc_now(),
                    )
                )
            layout.blob_dir.mkdir(exist_ok=True)
            layout.index_dir.mkdir(exist_ok=True)
            layout.write_marker(db_url)  # last: a directory is a store once its marker exists
            return cls(layout, engine, collection, lock)
        except BaseException:
            if engine is not None:
                engine.dispose()
            lock.release()
            layout.remove_contents(remove_root=made_root)
            raise

    @classmethod
    def open(cls, path: Path | str, *, write: bool = False, collection: str = "default") -> Store:
        """Opens an existing store; ``write=True`` takes the writer lock (``StoreLockedError`` if held)."""
        layout = StoreLayout(Path(path))
        marker = layout.read_marker()
        if marker.get("db_url") is None and not layout.db_file.is_file():
            raise StoreError(f"store {layout.root} has lost its database {layout.db_file.name}; restore that file")
        lock = WriterLock(layout.root).acquire() if write else None
        engine = None
        try:
            engine = make_engine(layout.db_url(marker))
            migrate(engine)
            return cls(layout, engine, collection, lock)
        except BaseException:
            if engine is not None:
                engine.dispose()
            if lock is not None:
                lock.release()
            raise

    def close(self) -> None:
        """Saves a pending index file (writer), disposes the engine and releases the lock. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.writable and self._keeper.dirty:
                self._keeper.save()
        except OSError as e:  # the commits stand; the stale file is rebuilt on the next open
            log.warning("could not save index file for %s: %s", self.path, e)
        finally:
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

    # ---- writing -------------------------------------------------------------------------------------------

    def add_document(self, doc: DocumentIn, records: list[RecordIn]) -> AddResult:
        """Adds a document and its records as one unit, or returns the stored twin of a duplicate text.

        Blobs are written first; then one SQL transaction inserts the rows, bumps the generation and adds the
        keys to the index in memory; after the commit the index file is saved. On any failure the blobs and
        index entries of this call are removed and the transaction rolls back: nothing of the document remains.
        """
        self._require_writable()
        keeper = self._keeper
        prepared = prepare_records(doc, records, keeper.key_dim)
        digest = doc.content_hash
        existing = self.find_by_hash(digest)
        if existing is not None:
            return AddResult(existing, True, [])
        written: list[str] = []
        tried_ids: list[int] = []
        old_index, old_dim = keeper.index, keeper.key_dim
        try:
            blobs = []
            for record in records:
                blob = self._blobs.write(record.tensors) if record.tensors else None
                if blob is not None:
                    written.append(blob[0])
                blobs.append(blob)
            with self._session() as s, s.begin():
                doc_id, memory_ids, generation = self._insert(s, doc, digest, records, blobs, prepared)
                tried_ids = [memory_ids[i] for i in prepared.key_rows]
                if tried_ids:
                    keeper.ensure(prepared.dim).add(tried_ids, prepared.keys)
        except BaseException as e:
            if tried_ids and keeper.index is not None:
                keeper.index.remove(tried_ids)
            keeper.index, keeper.key_dim = old_index, old_dim
            for rel in written:
                self._blobs.delete(rel)
            if isinstance(e, IntegrityError):  # the same text committed since our check (another writer)
                existing = self.find_by_hash(digest)
                if existing is not None:
                    return AddResult(existing, True, [])
            raise
        keeper.committed(generation)
        return AddResult(doc_id, False, memory_ids)

    def _insert(self, s: Session, doc: DocumentIn, digest: str, records, blobs, prepared: PreparedRecords):
        row = Document(
            collection_id=self._info.id,
            source=doc.source,
            content_hash=digest,
            text=doc.text,
            timestamp=doc.timestamp,
            stream=doc.stream,
            position=doc.position,
            external_id=doc.external_id,
            status="ready",
            meta=dict(doc.meta),
            created_at=utc_now(),
        )
        s.add(row)
        s.flush()
        keyed = set(prepared.key_rows)
        memories = [new_memory(row.id, r, blob, i in keyed) for i, (r, blob) in enumerate(zip(records, blobs))]
        s.add_all(memories)
        s.flush()
        collection = s.get(Collection, self._info.id)
        if collection.key_dim is None and prepared.dim is not None:
            collection.key_dim = prepared.dim
        collection.generation += 1
        s.flush()
        return row.id, [m.id for m in memories], collection.generation

    def remove_document(self, doc_id: int) -> None:
        """Deletes a document, its memories (rows, index entries) and then their blob files."""
        self._require_writable()
        removed: tuple[list[int], np.ndarray] | None = None
        with self._session() as s:
            try:
                with s.begin():
                    doc = s.get(Document, doc_id)
                    if doc is None or doc.collection_id != self._info.id:
                        raise DocumentNotFoundError(doc_id)
                    mems = s.execute(
                        select(Memory.id, Memory.blob_path, Memory.key).where(Memory.document_id == doc_id)
                    ).all()
                    s.delete(doc)  # the memories go by ON DELETE CASCADE
                    collection = s.get(Collection, self._info.id)
                    collection.generation += 1
                    s.flush()
                    generation = collection.generation
                    keyed = [(m.id, decode_key(m.key)) for m in mems if m.key is not None]
                    if keyed and self._keeper.index is not None:
                        ids = [i for i, _ in keyed]
                        self._keeper.index.remove(ids)
                        removed = (ids, np.stack([v for _, v in keyed]))
            except BaseException:
                if removed is not None:  # the commit failed: put the vectors back
                    self._keeper.index.add(*removed)
                raise
        self._keeper.committed(generation)
        for m in mems:
            if m.blob_path is not None:
                try:
                    self._blobs.delete(m.blob_path)
                except OSError as e:  # left as an orphan; ``verify`` reports it
                    log.warning("could not delete blob %s: %s", m.blob_path, e)

    def reindex(self) -> int:
        """Rebuilds the index from the keys in SQL and saves it; returns the number of vectors."""
        self._require_writable()
        self._keeper.rebuild()
        self._keeper.save()
        return self._keeper.ntotal

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

    # ---- reading -------------------------------------------------------------------------------------------

    def get_document(self, doc_id: int) -> DocumentRow:
        row = self.get_documents([doc_id]).get(doc_id)
        if row is None:
            raise DocumentNotFoundError(doc_id)
        return row

    def get_documents(self, doc_ids: Iterable[int]) -> dict[int, DocumentRow]:
        """The documents of ``doc_ids`` that this collection holds, by id, in one query per 500 ids."""
        ids = sorted(set(doc_ids))
        out: dict[int, DocumentRow] = {}
        with self._session() as s:
            for start in range(0, len(ids), queries.SQL_CHUNK):
                part = ids[start:start + queries.SQL_CHUNK]
                for row in queries.documents(s, self._info.id, self._info.name,
                                             select(Document).where(Document.id.in_(part))):
                    out[row.id] = row
        return out

    def find_by_hash(self, content_hash: str) -> int | None:
        """The id of the document whose text has this SHA-256 hex digest, or None."""
        with self._session() as s:
            query = select(Document.id).where(Document.collection_id == self._info.id)
            return s.scalar(query.where(Document.content_hash == content_hash))

    def list_documents(self, limit: int | None = None, offset: int = 0, stream: str | None = None) -> list[DocumentRow]:
        """Documents ordered by id, optionally only those of one stream."""
        query = select(Document)
        if stream is not None:
            query = query.where(Document.stream == stream)
        query = query.order_by(Document.id).offset(offset).limit(limit)
        with self._session() as s:
            return queries.documents(s, self._info.id, self._info.name, query)

    def count_documents(self) -> int:
        with self._session() as s:
            return s.scalar(select(func.count(Document.id)).where(Document.collection_id == self._info.id))

    def stream_length(self, stream: str) -> int:
        """The position the next document of ``stream`` takes: its document count, or past its largest position."""
        with self._session() as s:
            return queries.stream_length(s, self._info.id, stream)

    def memories(self, doc_id: int) -> list[MemoryRow]:
        """The memory records of a document, in the order they were given; ``DocumentNotFoundError`` if absent."""
        self.get_document(doc_id)
        with self._session() as s:
            rows = s.scalars(select(Memory).where(Memory.document_id == doc_id).order_by(Memory.id))
            return [memory_row(m) for m in rows]

    def get_memory(self, memory_id: int) -> MemoryRow:
        return memory_row(self._memory(memory_id))

    def load_payload(self, memory_id: int) -> dict[str, np.ndarray]:
        """The payload tensors of a memory, after verifying its checksum (``CorruptBlobError`` otherwise)."""
        return self.load_payloads([memory_id])[memory_id]

    def load_payloads(self, memory_ids: Iterable[int]) -> dict[int, dict[str, np.ndarray]]:
        """``load_payload`` of many memories, their rows read in one query per 500 ids; a memory this collection
        does not hold raises ``MemoryNotFoundError``."""
        ids = sorted(set(memory_ids))
        refs: dict[int, tuple[int, str | None, str | None]] = {}
        with self._session() as s:
            for start in range(0, len(ids), queries.SQL_CHUNK):
                refs.update(queries.payload_refs(s, self._info.id, ids[start:start + queries.SQL_CHUNK]))
        out = {}
        for memory_id in ids:
            if memory_id not in refs:
                raise MemoryNotFoundError(memory_id)
            document_id, blob_path, checksum = refs[memory_id]
            try:
                out[memory_id] = {} if blob_path is None else self._blobs.read(blob_path, checksum)
            except BlobIntegrityError as e:
                raise CorruptBlobError(document_id, memory_id, e.path, e.reason) from e
        return out

    def search(self, key: np.ndarray, k: int, kinds: set[str] | None = None) -> list[Hit]:
        """The ``k`` memories whose keys have the largest inner product with ``key``, best first."""
        key = np.asarray(key, dtype=np.float32)
        if key.ndim != 1:
            raise ValueError(f"search takes one 1-D key, got shape {list(key.shape)}; use search_many for a batch")
        return self.search_many(key[None, :], k, kinds)[0]

    def search_many(self, keys: np.ndarray, k: int, kinds: set[str] | None = None, *,
                    with_text: bool = False) -> list[list[Hit]]:
        """``search`` for each row of ``keys`` ([q, d]); optionally only memories whose kind is in ``kinds``;
        with ``with_text`` each hit carries its document's text (read in the same query)."""
        keys = np.ascontiguousarray(keys, dtype=np.float32)
        if keys.ndim != 2:
            raise ValueError(f"search_many takes keys of shape [q, d], got {list(keys.shape)}")
        if not self.writable:
            self._keeper.refresh()
        index, dim = self._keeper.index, self._keeper.key_dim
        if dim is not None and keys.shape[1] != dim:
            raise DimensionMismatchError(dim, keys.shape[1], what="query key")
        return search_joined(index, self._session, self._info.id, keys, k, kinds, with_text)

    def key_frequencies(self) -> tuple[np.ndarray, int]:
        """``(counts, n)``: per key dimension, how many of the ``n`` indexed memories have a non-zero entry
        there (what a sparse key encoder weighs queries by; ``memkit.embedders.LexicalEmbedder``)."""
        if not self.writable:
            self._keeper.refresh()
        index = self._keeper.index
        if index is None or index.ntotal == 0:
            return np.zeros(self._keeper.key_dim or 0, dtype=np.int64), 0
        return index.key_frequencies(), index.ntotal

    def stats(self) -> dict:
        """Counts and sizes: documents, memories (and by kind), streams, generation, index vectors, and bytes:
        ``blob_bytes`` (payload files), ``key_bytes`` (keys in SQL), ``text_bytes`` (document texts, UTF-8),
        ``state_bytes`` (method state files), ``db_bytes`` (the SQLite file and its WAL)."""
        with self._session() as s:
            out = health.collection_stats(s, self._info.id)
        out.update(
            index_vectors=self._keeper.ntotal,
            key_dim=self._keeper.key_dim,
            db_bytes=health.db_bytes(self._engine),
            state_bytes=self._state.total_bytes(),
            model_id=self._info.model_id,
            method=self._info.method,
        )
        return out

    def verify(self, check_blobs: bool = True) -> list[str]:
        """Problems found, one line each (empty when healthy): damaged, missing or orphan blobs, stale index."""
        if self.writable and self._keeper.dirty:
            try:
                self._keeper.save()  # bring the file up to date first; what still differs is a problem
            except OSError as e:
                log.warning("could not save index file for %s: %s", self.path, e)
        with self._session() as s:
            problems = health.blob_problems(s, self._info.id, self._blobs, check_blobs)
            problems += health.index_problems(s, self._info.id, self._keeper.ids(), self._keeper.path)
        if check_blobs:
            problems += self._state.problems()
        return problems

    # ---- internals -----------------------------------------------------------------------------------------

    def _require_writable(self) -> None:
        if self._closed:
            raise StoreError(f"store {self.path} is closed")
        if not self.writable:
            raise StoreError(f"store {self.path} was opened read-only; open it with write=True to change it")

    def _memory(self, memory_id: int) -> Memory:
        with self._session() as s:
            m = queries.memory(s, self._info.id, memory_id)
        if m is None:
            raise MemoryNotFoundError(memory_id)
        return m
