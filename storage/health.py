"""Counting and checking a store: the numbers behind ``Store.stats`` and the problems behind ``Store.verify``.

Owns: the read-only queries that summarise a collection, and the checks that compare SQL with the blob files
(every referenced blob read and checksummed; files no memory references) and with the index file (readable
and matching its checksum, the same ids as SQL, a sample of its vectors equal to the keys SQL holds). Each
problem is one line naming what it touches and the command that repairs it; what is normal and mends itself
(a stale index file) is a note instead. Changes nothing. Knows nothing of models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import Engine, LargeBinary, cast, func, select
from sqlalchemy.orm import Session

from storage import queries
from storage.blobs import BlobIntegrityError, BlobStore
from storage.index import IndexFileError, VectorIndex, index_file_present, read_sidecar
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
    """Bytes on disk of a SQLite database file and its WAL, or of a PostgreSQL database on its server (all of the
    database: a store has one to itself); None for other databases."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            return int(conn.execute(select(func.pg_database_size(func.current_database()))).scalar())
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return None
    base = Path(engine.url.database)
    return sum(p.stat().st_size for p in (base, base.with_name(base.name + "-wal")) if p.exists())


REPAIR = "`memkit doctor --repair` (or `memkit reindex`)"


def blob_problems(s: Session, collection_id: int, blobs: BlobStore,
                  check_checksums: bool) -> list[tuple[int, str]]:
    """``(memory id, line)`` of each missing, damaged or refused blob of the collection (a path memkit never
    writes is refused unread)."""
    problems = []
    rows = s.execute(
        select(Memory.id, Memory.document_id, Memory.blob_path, Memory.checksum, Memory.blob_offset, Memory.nbytes)
        .join(Document, Document.id == Memory.document_id)
        .where(Document.collection_id == collection_id, Memory.blob_path.is_not(None))
        .order_by(Memory.id)
    )
    for m in rows:
        try:
            if check_checksums:
                blobs.read_verified(m.blob_path, m.checksum, m.blob_offset, m.nbytes)
            elif not blobs.exists(m.blob_path):
                raise BlobIntegrityError(blobs.absolute(m.blob_path), "is missing")
        except BlobIntegrityError as e:
            problems.append((m.id,
                f"document {m.document_id}: blob of memory {m.id} {e.reason} ({m.blob_path}); "
                f"remove the document (`memkit rm {m.document_id}`) and ingest it again"
            ))
    return problems


def orphan_blobs(s: Session, blobs: BlobStore) -> list[str]:
    """Entries under ``blobs/`` that no memory of any collection references (a crash's leftovers)."""
    referenced = set(s.scalars(select(Memory.blob_path).where(Memory.blob_path.is_not(None)).distinct()))
    return [rel for rel in blobs.list_all() if rel not in referenced]


def index_check(s: Session, collection_id: int, index_file: Path, sample: int = 1000) -> tuple[list[str], list[str]]:
    """``(problems, notes)`` of the index file against SQL. A file behind the database (a writer saves it now and
    then, and a crash leaves the last one) is a note: the next load catches it up with the database. A current
    file must load, match its checksum, hold exactly the ids of SQL's keys, and hold
    the very keys SQL holds for a sample of ``sample`` ids spread over the collection."""
    generation, dim = s.execute(
        select(Collection.generation, Collection.key_dim).where(Collection.id == collection_id)
    ).one()
    sql_ids = queries.key_ids(s, collection_id)
    if dim is None:
        return ([] if len(sql_ids) == 0 else [f"{len(sql_ids)} keys in the database but no key dimension recorded"]), []
    meta = read_sidecar(index_file)
    rewrite = "the next load catches it up with the database; `memkit reindex` rewrites it now"
    if meta is None and index_file_present(index_file):
        return [f"index file {index_file} has no usable sidecar (damaged, or written by an older memkit "
                f"without a checksum), so it is never used and every search rebuilds the index; {REPAIR} "
                f"rewrites it"], []
    if meta is None or not index_file_present(index_file):
        return [], [f"index file {index_file} (or its sidecar) is missing; the next load rebuilds it from the "
                    f"database; `memkit reindex` rewrites it now"]
    if meta["generation"] != generation:
        return [], [f"index file {index_file} is at generation {meta['generation']}, the database at {generation} "
                    f"(a writer saves it now and then, or was interrupted); {rewrite}"]
    if meta["dim"] != dim:
        return [f"index file {index_file} has dimension {meta['dim']}, the collection {dim}; {REPAIR} rebuilds it"], []
    try:
        index = VectorIndex.load(index_file, meta, use_gpu=False)
    except IndexFileError as e:
        return [f"index file {index_file} {e}; {REPAIR} rebuilds it"], []
    held = np.sort(index.ids())
    if len(held) != len(sql_ids) or not np.array_equal(held, sql_ids):
        extra, missing = np.setdiff1d(held, sql_ids), np.setdiff1d(sql_ids, held)
        return [f"index file {index_file} holds {len(held)} vectors, the database {len(sql_ids)} keys "
                f"({len(extra)} ids the database lacks, {len(missing)} keys missing); {REPAIR} rebuilds it"], []
    picks = sql_ids[np.unique(np.linspace(0, len(sql_ids) - 1, num=min(sample, len(sql_ids))).astype(np.int64))] \
        if len(sql_ids) else sql_ids
    differ = 0
    for start in range(0, len(picks), queries.SQL_CHUNK):
        part = [int(i) for i in picks[start:start + queries.SQL_CHUNK]]
        keys = queries.keys_of(s, part)
        stored = index.vectors_of(part)
        differ += sum(not np.array_equal(stored[j], keys[i]) for j, i in enumerate(part))
    if differ:
        return [f"index file {index_file}: {differ} of {len(picks)} sampled vectors differ from the keys the "
                f"database holds; {REPAIR} rebuilds it"], []
    return [], []
