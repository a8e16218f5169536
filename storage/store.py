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
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from storage import health, lexical, maintenance, queries
from storage.blobs import BlobIntegrityError, BlobStore
from storage.database import check_url, diagnose, encodable, guarded, make_engine, open_engine
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
from storage.index import IndexSpec
from storage.keeper import IndexKeeper
from storage.layout import StoreLayout
from storage.lock import WriterLock
from storage.pending import PendingBlobs
from storage.migrations import check_current, migrate
from storage.records import PreparedRecords, prepare_records
from storage.rows import collection_info, memory_row, memory_values
from storage.schema import Collection, Document, Memory, utc_now
from storage.search import search_joined, search_lexical
from storage.state import StateFiles, StateIntegrityError
from storage.types import AddResult, CollectionInfo, DocumentIn, DocumentRow, HealthReport, Hit, MemoryRow, RecordIn

log = logging.getLogger(__name__)

MAX_ID = 2**63 - 1
"""Ids and offsets past this cannot exist in any database: such a document is simply not there."""


class Store:
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

    # ---- writing -------------------------------------------------------------------------------------------

    @guarded
    def add_document(self, doc: DocumentIn, records: list[RecordIn]) -> AddResult:
        """Adds a document and its records as one unit, or returns the stored twin of a duplicate text
        (``add_documents`` of one)."""
        return self.add_documents([(doc, records)])[0]

    @guarded
    def add_documents(self, items: Sequence[tuple[DocumentIn, list[RecordIn]]]) -> list[AddResult]:
        """Adds several documents with their records in one write, one ``AddResult`` per item in order; a text
        already stored (or given earlier in ``items``) is a duplicate of that document and writes nothing.

        Every item is checked before anything is written (a bad one raises and nothing is added). Then the
        payloads of all records go to one segment file (one fsync), and one SQL transaction inserts the rows,
        bumps the generation once and adds the keys to the index in memory; the commit makes every document
        of the call visible at once. On any failure the segment and the index entries of this call are removed
        and the transaction rolls back: nothing of any document remains. The index file is saved after the
        commit when the keeper's policy says so (not after every write)."""
        self._require_writable()
        keeper = self._keeper
        items = [(doc, list(records)) for doc, records in items]
        dim = keeper.key_dim
        prepared = []
        for doc, records in items:
            p = prepare_records(doc, records, dim)
            dim = p.dim if p.dim is not None else dim
            prepared.append(p)
        digests = [doc.content_hash for doc, _ in items]
        stored = self.find_by_hashes(digests)
        first: dict[str, int] = {}
        new = []  # positions of the items this call writes
        for i, digest in enumerate(digests):
            if digest not in stored and digest not in first:
                first[digest] = i
                new.append(i)
        results: list[AddResult | None] = [None] * len(items)
        if new:
            try:
                written = self._write_new(items, prepared, new, dim)
            except IntegrityError:  # a text committed since our check (another writer): each on its own
                if len(new) == 1:
                    existing = self.find_by_hash(digests[new[0]])
                    if existing is None:
                        raise
                    written = {new[0]: AddResult(existing, True, [])}
                else:
                    written = {i: self.add_documents([items[i]])[0] for i in new}
            results = [written.get(i) for i in range(len(items))]
        for i, digest in enumerate(digests):
            if results[i] is None:
                twin = stored.get(digest)
                if twin is None:
                    twin = results[first[digest]].document_id
                results[i] = AddResult(twin, True, [])
        return results

    def _write_new(self, items, prepared: list[PreparedRecords], new: list[int], dim: int | None) -> dict:
        """Writes the items at positions ``new`` (none stored yet); ``position -> AddResult``."""
        keeper = self._keeper
        if any(prepared[i].key_rows for i in new):
            keeper.get()  # read (or rebuild) the index before anything is written
        payloads = [(i, j) for i in new for j, record in enumerate(items[i][1]) if record.tensors]
        rel = self._blobs.new_path(segment=True) if payloads else None
        committed = False
        doc_ids: list[int] = []
        try:
            located: dict[tuple[int, int], tuple] = {}
            if rel is not None:
                self._pending.add([rel])  # listed before written: a crash's leftover is found by the next writer
                where = self._blobs.write_segment([items[i][1][j].tensors for i, j in payloads], rel)
                located = dict(zip(payloads, where))
            with self._session() as s:
                with s.begin():
                    doc_ids, memory_ids, generation = self._insert(s, items, prepared, new, located, dim)
                committed = True
        except BaseException as e:
            # Interrupted (Ctrl-C, SIGTERM) after the COMMIT, in SQLAlchemy's bookkeeping around it: the documents
            # are in, so keep them whole; the index, which has not seen them, catches up from SQL when next used.
            # The flag misses the last moments of the commit; the database does not (when even asking it fails,
            # the files are kept and write.pending too: the next writer deletes them only if nothing uses them).
            if committed or (doc_ids and not isinstance(e, IntegrityError)
                             and self._holds(doc_ids[0], items[new[0]][0].content_hash)):
                keeper.forget()
                if committed:
                    self._pending.clear()
                raise
            if rel is not None:
                self._blobs.delete(rel)
            self._pending.clear()
            raise
        self._pending.clear()
        # The index is a cache of SQL: it takes the keys once they are committed, so a failed or interrupted
        # write never leaves an id in it that SQL does not hold (SQLite hands a rolled-back batch's ids out again).
        ids = [memory_ids[i][r] for i in new for r in prepared[i].key_rows]
        try:
            if ids:
                keeper.ensure(dim).add(ids, np.concatenate([prepared[i].keys for i in new]))
        except Exception as e:  # the documents are in: the index catches up from SQL when next used
            log.warning("the index did not take the keys of %d committed memories (%s); it is caught up from the "
                        "database when next used", len(ids), e)
            keeper.forget()
        except BaseException:
            keeper.forget()
            raise
        keeper.committed(generation, changed=len(ids))
        return {i: AddResult(doc_ids[n], False, memory_ids[i]) for n, i in enumerate(new)}

    def _insert(self, s: Session, items, prepared, new: list[int], located: dict, dim: int | None):
        """Inserts the documents at ``new`` and their memories (bulk statements), bumps the generation once;
        ``(document ids, position -> memory ids, generation)``."""
        now = utc_now()
        cid = self._info.id
        docs = [items[i][0] for i in new]
        doc_ids = list(s.scalars(
            insert(Document).returning(Document.id, sort_by_parameter_order=True),
            [dict(collection_id=cid, source=d.source, content_hash=d.content_hash, text=d.text,
                  timestamp=d.timestamp, stream=d.stream, position=d.position, external_id=d.external_id,
                  status="ready", meta=dict(d.meta), created_at=now) for d in docs]))
        rows, owners = [], []
        for doc_id, i in zip(doc_ids, new):
            keyed = set(prepared[i].key_rows)
            for j, record in enumerate(items[i][1]):
                rows.append(memory_values(doc_id, record, located.get((i, j)), j in keyed))
                owners.append(i)
        memory_ids: dict[int, list[int]] = {i: [] for i in new}
        if rows:
            ids = s.scalars(insert(Memory).returning(Memory.id, sort_by_parameter_order=True), rows)
            for owner, memory_id in zip(owners, ids):
                memory_ids[owner].append(memory_id)
        texts = []  # the searchable memories' text, for the database's own full-text index
        for i in new:
            body = items[i][0].text
            for j in prepared[i].key_rows:
                span = items[i][1][j].span
                texts.append((memory_ids[i][j], cid, body if span is None else body[span[0]:span[1]]))
        lexical.add(s, texts)
        collection = s.get(Collection, cid)
        if collection.key_dim is None and dim is not None and any(prepared[i].key_rows for i in new):
            collection.key_dim = dim
        collection.generation += 1
        s.flush()
        return doc_ids, memory_ids, collection.generation

    @guarded
    def find_by_hashes(self, digests: Iterable[str]) -> dict[str, int]:
        """``content hash -> document id`` of the ``digests`` (SHA-256 hex of texts) the collection holds, in one
        query per 500."""
        out: dict[str, int] = {}
        wanted = sorted(set(digests))
        with self._session() as s:
            for start in range(0, len(wanted), queries.SQL_CHUNK):
                rows = s.execute(select(Document.content_hash, Document.id).where(
                    Document.collection_id == self._info.id,
                    Document.content_hash.in_(wanted[start:start + queries.SQL_CHUNK])))
                out.update({r.content_hash: r.id for r in rows})
        return out

    @guarded
    def remove_document(self, doc_id: int) -> None:
        """Deletes a document, its memories (rows, index entries) and then their blob files."""
        self._require_writable()
        committed = False
        with self._session() as s:
            try:
                with s.begin():
                    doc = s.get(Document, doc_id) if 0 <= doc_id <= MAX_ID else None
                    if doc is None or doc.collection_id != self._info.id:
                        raise DocumentNotFoundError(doc_id)
                    mems = s.execute(
                        select(Memory.id, Memory.blob_path, Memory.key.is_not(None).label("keyed"))
                        .where(Memory.document_id == doc_id)
                    ).all()
                    s.delete(doc)  # the memories go by ON DELETE CASCADE
                    collection = s.get(Collection, self._info.id)
                    collection.generation += 1
                    s.flush()
                    generation = collection.generation
                committed = True
            except DocumentNotFoundError:
                raise
            except BaseException:
                if committed or not self._holds(doc_id):  # gone, but the index has not seen it: caught up later
                    self._keeper.forget()
                raise
        keyed = [m.id for m in mems if m.keyed]
        try:
            if keyed and self._keeper.loaded and self._keeper.index is not None:  # after the commit, as adds
                self._keeper.index.remove(keyed)
        except BaseException:
            self._keeper.forget()
            raise
        self._keeper.committed(generation, removed=keyed)
        paths = sorted({m.blob_path for m in mems if m.blob_path is not None})
        if paths:
            with self._session() as s:
                shared = queries.referenced_blobs(s, paths)  # segments other documents' records still use
        for rel in paths:
            if rel in shared:
                continue
            try:
                self._blobs.delete(rel)
            except (OSError, BlobIntegrityError) as e:  # left in place; ``verify`` reports it
                log.warning("did not delete blob %r of document %s: %s", rel, doc_id, e)

    @guarded
    def remove_documents(self, doc_ids: Iterable[int]) -> list[int]:
        """Removes several documents, after checking that the collection holds every one of them (if one is
        missing, ``DocumentNotFoundError`` names each missing id and nothing is removed). Each removal is its own
        transaction. Returns the ids removed, each once, in the order given."""
        ids = list(dict.fromkeys(doc_ids))
        found = self.get_documents(ids)
        missing = [i for i in ids if i not in found]
        if missing:
            raise DocumentNotFoundError(*missing, note="; nothing was removed")
        for doc_id in ids:
            self.remove_document(doc_id)
        return ids

    @guarded
    def reindex(self, spec: IndexSpec | None = None) -> int:
        """Rebuilds the index from the keys in SQL and saves it; returns the number of vectors. With ``spec``,
        the collection's index becomes that kind (recorded in the store) first."""
        self._require_writable()
        if spec is not None:
            self._keeper.set_spec(spec)
        self._keeper.rebuild()
        self._keeper.save()
        return self._keeper.ntotal

    def index_info(self) -> dict:
        """The index asked for (``spec``) and the one held (``kind``, its ``params``, ``vectors``, ``tombstones``),
        loading it if need be."""
        self._follow()
        index = self._keeper.index
        return {"spec": self._keeper.spec.to_dict(), "kind": None if index is None else index.kind,
                "params": {} if index is None else index.params, "vectors": self._keeper.ntotal,
                "tombstones": 0 if index is None else index.tombstones}

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

    @guarded
    def get_documents(self, doc_ids: Iterable[int]) -> dict[int, DocumentRow]:
        """The documents of ``doc_ids`` that this collection holds, by id, in one query per 500 ids."""
        ids = sorted(i for i in set(doc_ids) if 0 <= i <= MAX_ID)
        out: dict[int, DocumentRow] = {}
        with self._session() as s:
            for start in range(0, len(ids), queries.SQL_CHUNK):
                part = ids[start:start + queries.SQL_CHUNK]
                for row in queries.documents(s, self._info.id, self._info.name,
                                             select(Document).where(Document.id.in_(part))):
                    out[row.id] = row
        return out

    @guarded
    def find_by_hash(self, content_hash: str) -> int | None:
        """The id of the document whose text has this SHA-256 hex digest, or None."""
        with self._session() as s:
            query = select(Document.id).where(Document.collection_id == self._info.id)
            return s.scalar(query.where(Document.content_hash == content_hash))

    @guarded
    def list_documents(self, limit: int | None = None, offset: int = 0, stream: str | None = None, *,
                       source: str | None = None, since: str | None = None,
                       until: str | None = None) -> list[DocumentRow]:
        """Documents ordered by id, optionally only those of one stream, of one source, or timestamped within
        ``[since, until]`` (ISO 8601 UTC as stored; either bound alone; undated documents are left out then)."""
        query = select(Document)
        for column, value in ((Document.stream, stream), (Document.source, source)):
            if value is not None:
                if not encodable(value):  # no stored value can hold a lone surrogate (a bad byte in argv)
                    return []
                query = query.where(column == value)
        if since is not None:
            query = query.where(Document.timestamp.is_not(None), Document.timestamp >= since)
        if until is not None:
            query = query.where(Document.timestamp.is_not(None), Document.timestamp <= until)
        if offset > MAX_ID or (limit is not None and limit <= 0):
            return []
        query = query.order_by(Document.id).offset(offset).limit(None if limit is None else min(limit, MAX_ID))
        with self._session() as s:
            return queries.documents(s, self._info.id, self._info.name, query)

    @guarded
    def count_documents(self) -> int:
        with self._session() as s:
            return s.scalar(select(func.count(Document.id)).where(Document.collection_id == self._info.id))

    @guarded
    def stream_length(self, stream: str) -> int:
        """The position the next document of ``stream`` takes: its document count, or past its largest position."""
        with self._session() as s:
            return queries.stream_length(s, self._info.id, stream)

    @guarded
    def memories(self, doc_id: int) -> list[MemoryRow]:
        """The memory records of a document, in the order they were given; ``DocumentNotFoundError`` if absent."""
        self.get_document(doc_id)
        with self._session() as s:
            rows = s.scalars(select(Memory).where(Memory.document_id == doc_id).order_by(Memory.id))
            return [memory_row(m) for m in rows]

    @guarded
    def get_memory(self, memory_id: int) -> MemoryRow:
        return memory_row(self._memory(memory_id))

    def load_payload(self, memory_id: int) -> dict[str, np.ndarray]:
        """The payload tensors of a memory, after verifying its checksum (``CorruptBlobError`` otherwise)."""
        return self.load_payloads([memory_id])[memory_id]

    @guarded
    def load_payloads(self, memory_ids: Iterable[int]) -> dict[int, dict[str, np.ndarray]]:
        """``load_payload`` of many memories, their rows read in one query per 500 ids; a memory this collection
        does not hold raises ``MemoryNotFoundError``."""
        ids = sorted(set(memory_ids))
        if any(not 0 <= i <= MAX_ID for i in ids):
            raise MemoryNotFoundError(next(i for i in ids if not 0 <= i <= MAX_ID))
        refs: dict[int, tuple] = {}
        with self._session() as s:
            for start in range(0, len(ids), queries.SQL_CHUNK):
                refs.update(queries.payload_refs(s, self._info.id, ids[start:start + queries.SQL_CHUNK]))
        out = {}
        for memory_id in ids:
            if memory_id not in refs:
                raise MemoryNotFoundError(memory_id)
            document_id, blob_path, checksum, offset, nbytes = refs[memory_id]
            try:
                out[memory_id] = {} if blob_path is None else self._blobs.read(blob_path, checksum, offset, nbytes)
            except BlobIntegrityError as e:
                raise CorruptBlobError(document_id, memory_id, e.path, e.reason) from e
        return out

    def search(self, key: np.ndarray, k: int, kinds: set[str] | None = None) -> list[Hit]:
        """The ``k`` memories whose keys have the largest inner product with ``key``, best first."""
        key = np.asarray(key, dtype=np.float32)
        if key.ndim != 1:
            raise ValueError(f"search takes one 1-D key, got shape {list(key.shape)}; use search_many for a batch")
        return self.search_many(key[None, :], k, kinds)[0]

    @guarded
    def search_many(self, keys: np.ndarray, k: int, kinds: set[str] | None = None, *,
                    with_text: bool = False, as_of: str | None = None) -> list[list[Hit]]:
        """``search`` for each row of ``keys`` ([q, d]); optionally only memories whose kind is in ``kinds``, and
        with ``as_of`` (ISO 8601 UTC, as ``memkit.sources.parse_timestamp`` makes it) only memories of documents
        timestamped at or before it (documents without a timestamp are left out then); with ``with_text`` each
        hit carries its document's text (read in the same query)."""
        keys = np.ascontiguousarray(keys, dtype=np.float32)
        if keys.ndim != 2:
            raise ValueError(f"search_many takes keys of shape [q, d], got {list(keys.shape)}")
        self._follow()
        index, dim = self._keeper.index, self._keeper.key_dim
        if dim is not None and keys.shape[1] != dim:
            raise DimensionMismatchError(dim, keys.shape[1], what="query key")
        return search_joined(index, self._session, self._info.id, keys, k, kinds, with_text, as_of)

    @guarded
    def search_text_many(self, queries: Sequence[str], k: int, kinds: set[str] | None = None, *,
                         with_text: bool = False, as_of: str | None = None) -> list[list[Hit]]:
        """For each query text, the ``k`` memories that best match its words by the database's full-text index
        (SQLite FTS5's BM25; PostgreSQL's ``ts_rank``), best first, with the same filters as ``search_many``. A
        hit's ``score`` is the database's (higher is better; not comparable with a key's inner product). A query
        without a content word finds nothing; no character of a query is query syntax."""
        return search_lexical(self._session, self._info.id, list(queries), k, kinds, with_text, as_of)

    @guarded
    def key_frequencies(self) -> tuple[np.ndarray, int]:
        """``(counts, n)``: per key dimension, how many of the ``n`` indexed memories have a non-zero entry
        there (what a sparse key encoder weighs queries by; ``memkit.embedders.LexicalEmbedder``)."""
        self._follow()
        index = self._keeper.index
        if index is None or index.ntotal == 0:
            return np.zeros(self._keeper.key_dim or 0, dtype=np.int64), 0
        return index.key_frequencies(), index.ntotal

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

    # ---- internals -----------------------------------------------------------------------------------------

    def _recover_pending(self) -> None:
        """For a writer opening the store: deletes the blobs a crashed writer listed and never committed."""
        recover_pending(self._session, self._blobs, self._pending)

    def _safe_temps(self, rel: str) -> list[str]:
        try:
            return self._blobs.with_temps(rel)
        except BlobIntegrityError:  # a line memkit did not write: judged like any other file
            return []

    def _follow(self) -> None:
        """The index, loaded if need be; a reader also follows the writer's commits."""
        if self.writable:
            self._keeper.get()
        else:
            self._keeper.refresh()

    def _holds(self, doc_id: int, digest: str | None = None) -> bool:
        """Whether the database holds document ``doc_id`` (with text ``digest``), asked afresh; when even that
        fails, the answer that keeps files: True."""
        try:
            with self._session() as s:
                row = s.execute(select(Document.content_hash).where(Document.id == doc_id)).first()
        except Exception:
            return True
        return row is not None and (digest is None or row.content_hash == digest)

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
