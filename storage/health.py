"""Counting and checking a store: the numbers behind ``Store.stats`` and the problems behind ``Store.verify``.

Owns: the read-only queries that summarise a collection, and the checks that compare SQL with the blob files
and with the index (file and memory). Each problem is one line naming the document and memory it touches and,
where there is one, the command that repairs it. Changes nothing. Knows nothing of models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import Engine, LargeBinary, cast, func, select
from sqlalchemy.orm import Session

from storage.blobs import BlobIntegrityError, BlobStore
from storage.index import read_sidecar
from storage.schema import Collection, Document, Memory


def collection_stats(s: Session, collection_id: int) -> dict:
    in_collection = Document.collection_id == collection_id
    by_kind = s.execute(
        select(Memory.kind, func.count(Memory.id))
        .join(Document, Document.id == Memory.document_id)
        .where(in_collection)
        .group_by(Memory.kind)
        .order_by(Memory.kind)
    ).all()
    blob_bytes = s.scalar(
        select(func.coalesce(func.sum(Memory.nbytes), 0)).join(Document, Document.id == Memory.document_id).where(
            in_collection
        )
    )
    key_bytes = s.scalar(
        select(func.coalesce(func.sum(func.length(Memory.key)), 0)).join(Document, Document.id == Memory.document_id)
        .where(in_collection)
    )
    return {
        "documents": s.scalar(select(func.count(Document.id)).where(in_collection)),
        "memories": sum(n for _, n in by_kind),
        "memories_by_kind": {kind: n for kind, n in by_kind},
        "streams": s.scalar(select(func.count(func.distinct(Document.stream))).where(in_collection)),
        "blob_bytes": int(blob_bytes),
        "key_bytes": int(key_bytes),
        "text_bytes": _text_bytes(s, collection_id),
        "generation": s.scalar(select(Collection.generation).where(Collection.id == collection_id)),
    }


def _text_bytes(s: Session, collection_id: int) -> int:
    """UTF-8 bytes of the collection's document texts (SQLite's length() of a text counts characters)."""
    text = Document.text
    measure = func.length(cast(text, LargeBinary)) if s.get_bind().dialect.name == "sqlite" else func.octet_length(text)
    return int(s.scalar(select(func.coalesce(func.sum(measure), 0)).where(Document.collection_id == collection_id)))


def db_bytes(engine: Engine) -> int | None:
    """Bytes on disk of a SQLite database file and its WAL; None for other databases."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return None
    base = Path(engine.url.database)
    return sum(p.stat().st_size for p in (base, base.with_name(base.name + "-wal")) if p.exists())


def blob_problems(s: Session, collection_id: int, blobs: BlobStore, check_checksums: bool) -> list[str]:
    """Missing or damaged blobs of the collection, and blob files no memory of any collection references."""
    problems = []
    rows = s.execute(
        select(Memory.id, Memory.document_id, Memory.blob_path, Memory.checksum)
        .join(Document, Document.id == Memory.document_id)
        .where(Document.collection_id == collection_id, Memory.blob_path.is_not(None))
        .order_by(Memory.id)
    )
    for m in rows:
        try:
            if check_checksums:
                blobs.read_verified(m.blob_path, m.checksum)
            elif not blobs.exists(m.blob_path):
                raise BlobIntegrityError(blobs.absolute(m.blob_path), "is missing")
        except BlobIntegrityError as e:
            problems.append(
                f"document {m.document_id}: blob of memory {m.id} {e.reason} ({m.blob_path}); "
                f"remove the document and ingest it again"
            )
    referenced = set(s.scalars(select(Memory.blob_path).where(Memory.blob_path.is_not(None))))
    for rel in blobs.list_all():
        if rel not in referenced:
            problems.append(f"orphan blob file {rel} is referenced by no memory; it can be deleted")
    return problems


def index_problems(s: Session, collection_id: int, held_ids: np.ndarray, index_file: Path) -> list[str]:
    """Disagreements between the keys in SQL, the index in memory and the index file with its sidecar."""
    generation, dim = s.execute(
        select(Collection.generation, Collection.key_dim).where(Collection.id == collection_id)
    ).one()
    sql_ids = np.array(
        sorted(
            s.scalars(
                select(Memory.id)
                .join(Document, Document.id == Memory.document_id)
                .where(Document.collection_id == collection_id, Memory.key.is_not(None))
            )
        ),
        dtype=np.int64,
    )
    if dim is None:
        return [] if len(sql_ids) == 0 else [f"{len(sql_ids)} keys in the database but no key dimension recorded"]
    fix = "run `memkit reindex`"
    problems = []
    meta = read_sidecar(index_file)
    if not index_file.exists() or meta is None:
        problems.append(f"index file {index_file} or its sidecar is missing; {fix}")
    else:
        if meta["generation"] != generation:
            problems.append(
                f"index file {index_file} is at generation {meta['generation']}, the database at {generation}; {fix}"
            )
        if meta["count"] != len(sql_ids):
            problems.append(
                f"index file {index_file} holds {meta['count']} vectors, the database {len(sql_ids)} keys; {fix}"
            )
        if meta["dim"] != dim:
            problems.append(f"index file {index_file} has dimension {meta['dim']}, the collection {dim}; {fix}")
    held = np.sort(held_ids)
    extra = np.setdiff1d(held, sql_ids)
    missing = np.setdiff1d(sql_ids, held)
    if len(extra) or len(missing):
        problems.append(
            f"index in memory has {len(extra)} ids the database lacks and lacks {len(missing)} keys it has; {fix}"
        )
    return problems
