"""Conversion between the store's plain values and its SQL rows.

Owns: turning ``schema`` objects into ``types`` dataclasses (so that no SQLAlchemy object ever leaves the
package) and a ``RecordIn`` plus its written blob into a ``Memory`` row. Knows nothing of FAISS, blob files'
contents or models.
"""

from __future__ import annotations

from storage.schema import Collection, Document, Memory, encode_key
from storage.types import CollectionInfo, DocumentRow, MemoryRow, RecordIn


def span_of(start: int | None, end: int | None) -> tuple[int, int] | None:
    return None if start is None or end is None else (start, end)


def collection_info(c: Collection) -> CollectionInfo:
    return CollectionInfo(
        id=c.id,
        name=c.name,
        model_id=c.model_id,
        model_revision=c.model_revision,
        model_fingerprint=c.model_fingerprint,
        method=c.method,
        method_config=dict(c.method_config or {}),
        key_dim=c.key_dim,
        created_at=c.created_at,
    )


def document_row(d: Document, collection: str, n_memories: int) -> DocumentRow:
    return DocumentRow(
        id=d.id,
        collection=collection,
        source=d.source,
        content_hash=d.content_hash,
        text=d.text,
        timestamp=d.timestamp,
        stream=d.stream,
        position=d.position,
        external_id=d.external_id,
        status=d.status,
        created_at=d.created_at,
        n_memories=int(n_memories),
        meta=dict(d.meta or {}),
    )


def memory_row(m: Memory) -> MemoryRow:
    return MemoryRow(
        id=m.id,
        document_id=m.document_id,
        kind=m.kind,
        blob_path=m.blob_path,
        shapes={k: list(v) for k, v in (m.shapes or {}).items()},
        dtypes=dict(m.dtypes or {}),
        nbytes=m.nbytes,
        checksum=m.checksum,
        span=span_of(m.span_start, m.span_end),
        meta=dict(m.meta or {}),
    )


def memory_values(document_id: int, record: RecordIn, located: tuple[str, int, str, int] | None,
                  keyed: bool) -> dict:
    """The column values of ``record``'s row; ``located`` is ``(path, offset, checksum, nbytes)`` from
    ``BlobStore.write_segment``, or None for a record without payload."""
    rel, offset, checksum, nbytes = located if located is not None else (None, None, None, 0)
    span = record.span
    return dict(
        document_id=document_id,
        kind=record.kind,
        blob_path=rel,
        blob_offset=offset,
        shapes={k: list(v.shape) for k, v in record.tensors.items()},
        dtypes={k: str(v.dtype) for k, v in record.tensors.items()},
        nbytes=nbytes,
        checksum=checksum,
        span_start=None if span is None else int(span[0]),
        span_end=None if span is None else int(span[1]),
        key=encode_key(record.key) if keyed else None,
        meta=dict(record.meta),
    )
