"""Read queries of one collection, returning plain values.

Owns: the SELECTs the store runs for reads (documents with their memory counts, memories, the rows that fill
search hits, the keys that rebuild the index), each scoped to one collection. Reads of given memory ids check
the collection on the rows found rather than in the WHERE clause: with it there, SQLite's planner walks every
document of the collection (its index on ``collection_id``) instead of looking the ids up, and a search's cost
grew with the store. Knows nothing of FAISS files, blobs' contents or models.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from sqlalchemy import Select, func, null, select
from sqlalchemy.orm import Session

from storage.rows import document_row, span_of
from storage.schema import Document, Memory, decode_key
from storage.types import DocumentRow

SQL_CHUNK = 500
"""Ids per ``IN (...)`` clause, well under every database's bound-parameter limit."""


def documents(s: Session, collection_id: int, collection: str, query: Select) -> list[DocumentRow]:
    """Runs ``query`` (a ``select(Document)`` with any filters and order) with each document's memory count
    (counted per returned document through the index on ``memories.document_id``, so a read of a few documents
    costs the same in a store of any size)."""
    count = select(func.count(Memory.id)).where(Memory.document_id == Document.id).correlate(Document)
    query = query.add_columns(count.scalar_subquery()).where(Document.collection_id == collection_id)
    return [document_row(d, collection, n) for d, n in s.execute(query).all()]


def stream_length(s: Session, collection_id: int, stream: str) -> int:
    """Documents in ``stream``, or one past its largest position if that is more (after removals)."""
    count, top = s.execute(
        select(func.count(Document.id), func.max(Document.position)).where(
            Document.collection_id == collection_id, Document.stream == stream
        )
    ).one()
    return max(count, -1 if top is None else top + 1)


def memory(s: Session, collection_id: int, memory_id: int) -> Memory | None:
    return s.scalar(
        select(Memory)
        .join(Document, Document.id == Memory.document_id)
        .where(Memory.id == memory_id, Document.collection_id == collection_id)
    )


def payload_refs(s: Session, collection_id: int, ids: list[int]) -> dict[int, tuple]:
    """``memory id -> (document_id, blob_path, checksum, blob_offset, nbytes)`` of ``ids`` (at most
    ``SQL_CHUNK``) that belong to the collection (only the columns a payload read needs: never the key)."""
    rows = s.execute(
        select(Memory.id, Memory.document_id, Memory.blob_path, Memory.checksum, Memory.blob_offset, Memory.nbytes,
               Document.collection_id)
        .join(Document, Document.id == Memory.document_id)
        .where(Memory.id.in_(ids))
    )
    return {r.id: (r.document_id, r.blob_path, r.checksum, r.blob_offset, r.nbytes) for r in rows
            if r.collection_id == collection_id}


def hit_rows(s: Session, collection_id: int, ids: set[int], kinds: set[str] | None,
             with_text: bool = False, as_of: str | None = None) -> dict[int, tuple]:
    """``memory id -> (document_id, kind, span, meta, source, text)`` for the ids SQL still holds (of
    ``kinds``; with ``as_of``, of documents timestamped at or before it: ISO 8601 UTC strings as the store
    writes them compare in time order); ``text`` is the document's text with ``with_text``, else None."""
    out: dict[int, tuple] = {}
    ordered = sorted(ids)
    text = Document.text if with_text else null()
    for start in range(0, len(ordered), SQL_CHUNK):
        query = (
            select(
                Memory.id, Memory.document_id, Memory.kind, Memory.span_start, Memory.span_end, Memory.meta,
                Document.source, Document.collection_id, text.label("text"),
            )
            .join(Document, Document.id == Memory.document_id)
            .where(Memory.id.in_(ordered[start : start + SQL_CHUNK]))
        )
        if kinds is not None:
            query = query.where(Memory.kind.in_(sorted(kinds)))
        if as_of is not None:
            query = query.where(Document.timestamp.is_not(None), Document.timestamp <= as_of)
        for r in s.execute(query):
            if r.collection_id != collection_id:
                continue
            out[r.id] = (r.document_id, r.kind, span_of(r.span_start, r.span_end), dict(r.meta or {}), r.source,
                         r.text)
    return out


def keys(s: Session, collection_id: int, batch: int = 10_000,
         after: int = -1) -> Iterator[tuple[list[int], np.ndarray]]:
    """Every key of the collection in id order (only those of ids past ``after``), as ``(ids, [n, dim]
    float32)`` batches."""
    rows = s.execute(
        select(Memory.id, Memory.key)
        .join(Document, Document.id == Memory.document_id)
        .where(Document.collection_id == collection_id, Memory.key.is_not(None), Memory.id > after)
        .order_by(Memory.id)
        .execution_options(yield_per=batch)
    )
    for part in rows.partitions():
        yield [r.id for r in part], np.stack([decode_key(r.key) for r in part])


def key_count(s: Session, collection_id: int) -> int:
    """How many memories of the collection have a key."""
    return s.scalar(
        select(func.count(Memory.id))
        .join(Document, Document.id == Memory.document_id)
        .where(Document.collection_id == collection_id, Memory.key.is_not(None))
    )


def key_ids(s: Session, collection_id: int) -> np.ndarray:
    """The ids of the collection's memories that have a key, sorted (int64)."""
    ids = s.scalars(
        select(Memory.id)
        .join(Document, Document.id == Memory.document_id)
        .where(Document.collection_id == collection_id, Memory.key.is_not(None))
        .order_by(Memory.id)
    )
    return np.fromiter(ids, dtype=np.int64)


def keys_of(s: Session, ids: list[int]) -> dict[int, np.ndarray]:
    """``memory id -> key`` for ``ids`` (at most ``SQL_CHUNK``) that have one."""
    rows = s.execute(select(Memory.id, Memory.key).where(Memory.id.in_(ids), Memory.key.is_not(None)))
    return {r.id: decode_key(r.key) for r in rows}


def existing_memories(s: Session, ids: list[int]) -> set[int]:
    """Which of ``ids`` still have a row."""
    out: set[int] = set()
    for start in range(0, len(ids), SQL_CHUNK):
        out.update(s.scalars(select(Memory.id).where(Memory.id.in_(ids[start:start + SQL_CHUNK]))))
    return out


def referenced_blobs(s: Session, rel_paths: list[str]) -> set[str]:
    """Which of ``rel_paths`` some memory (of any collection) references."""
    out: set[str] = set()
    for start in range(0, len(rel_paths), SQL_CHUNK):
        part = rel_paths[start:start + SQL_CHUNK]
        out.update(s.scalars(select(Memory.blob_path).where(Memory.blob_path.in_(part))))
    return out
