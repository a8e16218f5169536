"""The ``Store``'s reads of documents and memories: what listing, showing and an answer's payloads need.

Owns: ``StoreReads``, the methods of ``Store`` that look documents up (by id, by text hash, listed with
filters, counted, a stream's next position) and memories (their rows, and their payload tensors read from the
blobs and checked against their checksums), and ``MAX_ID``, past which no id or offset can exist. Each is one
or a few read-only SQL queries of the collection (``queries``); none reads the vector index or changes anything.
A mixin of ``Store``, using its ``_session``, ``_info`` and ``_blobs``; it knows nothing of how a store is
opened, written or searched. Knows nothing of models, tokenizers or torch.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from sqlalchemy import func, select

from storage import queries
from storage.blobs import BlobIntegrityError
from storage.database import encodable, guarded
from storage.errors import CorruptBlobError, DocumentNotFoundError, MemoryNotFoundError
from storage.rows import memory_row
from storage.schema import Document, Memory
from storage.types import DocumentRow, MemoryRow

MAX_ID = 2**63 - 1
"""Ids and offsets past this cannot exist in any database: such a document is simply not there."""


class StoreReads:
    """Documents and memories read from SQL and the blob files (mixed into ``Store``)."""

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

    def _memory(self, memory_id: int) -> Memory:
        with self._session() as s:
            m = queries.memory(s, self._info.id, memory_id)
        if m is None:
            raise MemoryNotFoundError(memory_id)
        return m
