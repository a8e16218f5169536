"""The store's SQL tables as SQLAlchemy 2.0 mapped classes.

Owns: the ORM view of the current schema (``Collection``, ``Document``, ``Memory``, ``SchemaMigration``) and key
encoding (float32 little-endian bytes); engines are opened by ``database.py``. The tables are
*created* by ``migrations.py``, never by ``metadata.create_all``: when the schema changes, add a migration there
and change the classes here to match (a test checks that the two agree). Knows nothing of models, blobs or FAISS.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utc_now() -> str:
    """Now as ISO 8601 UTC with seconds precision and a ``Z``, the store's one timestamp format."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def encode_key(key: np.ndarray) -> bytes:
    """A key vector as raw float32 little-endian bytes, the one encoding of keys in SQL."""
    return np.ascontiguousarray(key, dtype="<f4").tobytes()


def decode_key(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype="<f4").astype(np.float32, copy=False)


Wide = BigInteger().with_variant(Integer, "sqlite")
"""A 64-bit integer column: BIGINT in PostgreSQL; INTEGER in SQLite, which is 64-bit there and which an
AUTOINCREMENT key must be."""


class Base(DeclarativeBase):
    pass


class SchemaMigration(Base):
    __tablename__ = "schema_migrations"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    applied_at: Mapped[str] = mapped_column(String(32))


class Collection(Base):
    __tablename__ = "collections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    model_id: Mapped[str] = mapped_column(Text)
    model_revision: Mapped[str | None] = mapped_column(Text)
    model_fingerprint: Mapped[str] = mapped_column(String(200))
    method: Mapped[str] = mapped_column(String(200))
    method_config: Mapped[dict[str, Any]] = mapped_column(JSON)
    key_dim: Mapped[int | None] = mapped_column(Integer)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[str] = mapped_column(String(32))
    index_spec: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """The vector index asked for (``storage.index.IndexSpec`` as a dict); None: the default, ``auto``."""


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (
        UniqueConstraint("collection_id", "content_hash", name="uq_documents_collection_hash"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Wide, primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    timestamp: Mapped[str | None] = mapped_column(String(64))
    stream: Mapped[str | None] = mapped_column(String(200), index=True)
    position: Mapped[int | None] = mapped_column(Wide)
    external_id: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(32))
    meta: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[str] = mapped_column(String(32))


class Memory(Base):
    __tablename__ = "memories"
    # Autoincrement so a removed memory's id is never reused: a stale index file in a reader could otherwise map
    # an old vector onto a new row.
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Wide, primary_key=True)
    document_id: Mapped[int] = mapped_column(Wide, ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    blob_path: Mapped[str | None] = mapped_column(String(300))
    blob_offset: Mapped[int | None] = mapped_column(Wide)
    """Where the record starts in a segment file (``nbytes`` long); None: the record is the whole file."""
    shapes: Mapped[dict[str, Any]] = mapped_column(JSON)
    dtypes: Mapped[dict[str, Any]] = mapped_column(JSON)
    nbytes: Mapped[int] = mapped_column(Wide)
    checksum: Mapped[str | None] = mapped_column(String(64))
    span_start: Mapped[int | None] = mapped_column(Wide)
    span_end: Mapped[int | None] = mapped_column(Wide)
    key: Mapped[bytes | None] = mapped_column(LargeBinary)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON)
