"""Versioned, ordered, named schema migrations, applied when a store is opened.

Owns: the list ``MIGRATIONS``, ``migrate(engine)``, which applies the ones a database has not seen, in
order, inside one transaction, and records each in ``schema_migrations``, and ``check_current(engine)``, a
reader's check that changes nothing. A migration is frozen history: it
describes the tables as they were when it was written (with its own ``MetaData``, never the ORM classes of
``schema.py``, which follow the newest schema). To change the schema, append a migration here and change
``schema.py`` to match. Knows nothing of models, blobs or FAISS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    insert,
    inspect,
    select,
    text,
)

from storage.database import describe
from storage.errors import CorruptDatabaseError, StoreFormatError
from storage.schema import utc_now


@dataclass(frozen=True)
class Migration:
    name: str
    """Unique and sortable; ``NNNN_what_it_does``."""
    apply: Callable[[Connection], None]
    """Runs the migration's statements on a connection that is inside the migration transaction."""


def _0001_initial(conn: Connection) -> None:
    md = MetaData()
    Table(
        "collections",
        md,
        Column("id", Integer, primary_key=True),
        Column("name", String(200), nullable=False, unique=True),
        Column("model_id", Text, nullable=False),
        Column("model_revision", Text),
        Column("model_fingerprint", String(200), nullable=False),
        Column("method", String(200), nullable=False),
        Column("method_config", JSON, nullable=False),
        Column("key_dim", Integer),
        Column("generation", Integer, nullable=False),
        Column("created_at", String(32), nullable=False),
    )
    Table(
        "documents",
        md,
        Column("id", Integer, primary_key=True),
        Column("collection_id", Integer, ForeignKey("collections.id", ondelete="CASCADE"), nullable=False),
        Column("source", Text, nullable=False),
        Column("content_hash", String(64), nullable=False),
        Column("text", Text, nullable=False),
        Column("timestamp", String(64)),
        Column("stream", String(200)),
        Column("position", Integer),
        Column("external_id", String(200)),
        Column("status", String(32), nullable=False),
        Column("meta", JSON, nullable=False),
        Column("created_at", String(32), nullable=False),
        UniqueConstraint("collection_id", "content_hash", name="uq_documents_collection_hash"),
        Index("ix_documents_collection_id", "collection_id"),
        Index("ix_documents_stream", "stream"),
        sqlite_autoincrement=True,
    )
    Table(
        "memories",
        md,
        Column("id", Integer, primary_key=True),
        Column("document_id", Integer, ForeignKey("documents.id", ondelete="CASCADE"), nullable=False),
        Column("kind", String(64), nullable=False),
        Column("blob_path", String(300)),
        Column("shapes", JSON, nullable=False),
        Column("dtypes", JSON, nullable=False),
        Column("nbytes", Integer, nullable=False),
        Column("checksum", String(64)),
        Column("span_start", Integer),
        Column("span_end", Integer),
        Column("key", LargeBinary),
        Column("meta", JSON, nullable=False),
        Index("ix_memories_document_id", "document_id"),
        sqlite_autoincrement=True,
    )
    md.create_all(conn)


def _0002_segments_and_index_spec(conn: Connection) -> None:
    """Records of a batch share one segment file (a memory's offset in it), a collection records the vector
    index it asks for, and (PostgreSQL) ids, positions and sizes are 64-bit as in SQLite."""
    wide = "BIGINT" if conn.dialect.name == "postgresql" else "INTEGER"  # SQLite's INTEGER is 64-bit already
    conn.exec_driver_sql(f"ALTER TABLE memories ADD COLUMN blob_offset {wide}")
    conn.exec_driver_sql("ALTER TABLE collections ADD COLUMN index_spec JSON")
    if conn.dialect.name == "postgresql":  # ids, positions and sizes past 2**31 (int4 there)
        for table, columns in (("documents", ("id", "position")),
                               ("memories", ("id", "document_id", "nbytes", "span_start", "span_end"))):
            conn.exec_driver_sql(f"ALTER TABLE {table} " + ", ".join(f"ALTER COLUMN {c} TYPE BIGINT" for c in columns))
            sequence = conn.exec_driver_sql(f"SELECT pg_get_serial_sequence('{table}', 'id')").scalar()
            if sequence:
                conn.exec_driver_sql(f"ALTER SEQUENCE {sequence} AS BIGINT")


def _0003_memory_text(conn: Connection) -> None:
    """A full-text (BM25) index of the searchable memories' text, kept by the database itself: SQLite FTS5, or a
    PostgreSQL tsvector table with a GIN index; filled from the memories that have a key."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("CREATE VIRTUAL TABLE memory_text USING fts5(text, collection_id UNINDEXED, "
                             "tokenize = 'porter unicode61 remove_diacritics 2')")
        conn.exec_driver_sql("CREATE TRIGGER memory_text_after_memory_delete AFTER DELETE ON memories "
                             "BEGIN DELETE FROM memory_text WHERE rowid = OLD.id; END")
        insert_row = "INSERT INTO memory_text (rowid, text, collection_id) VALUES (:id, :text, :cid)"
    elif conn.dialect.name == "postgresql":
        conn.exec_driver_sql("CREATE TABLE memory_text (memory_id bigint PRIMARY KEY REFERENCES memories(id) "
                             "ON DELETE CASCADE, collection_id integer NOT NULL, tsv tsvector NOT NULL)")
        conn.exec_driver_sql("CREATE INDEX ix_memory_text_tsv ON memory_text USING gin (tsv)")
        conn.exec_driver_sql("CREATE INDEX ix_memory_text_collection_id ON memory_text (collection_id)")
        insert_row = ("INSERT INTO memory_text (memory_id, collection_id, tsv) "
                      "VALUES (:id, :cid, to_tsvector('english', left(:text, 200000)))")
    else:
        raise StoreFormatError(f"memkit keeps its full-text index in SQLite or PostgreSQL, not {conn.dialect.name}")
    # 500 memories at a time, each with its own span cut in SQL (substr counts characters in both databases), so
    # a long document with many chunks is never held once per chunk
    page = text(
        "SELECT m.id, d.collection_id, CASE WHEN m.span_start IS NULL OR m.span_end IS NULL THEN d.text "
        "ELSE substr(d.text, CAST(m.span_start + 1 AS INTEGER), CAST(m.span_end - m.span_start AS INTEGER)) "
        "END AS body FROM memories m "
        "JOIN documents d ON d.id = m.document_id WHERE m.key IS NOT NULL AND m.id > :after ORDER BY m.id LIMIT 500")
    after = -1
    while True:
        rows = conn.execute(page, {"after": after}).all()
        if not rows:
            break
        conn.execute(text(insert_row), [{"id": r.id, "cid": r.collection_id, "text": r.body} for r in rows])
        after = rows[-1].id


MIGRATIONS: list[Migration] = [
    Migration("0001_initial", _0001_initial),
    Migration("0002_segments_and_index_spec", _0002_segments_and_index_spec),
    Migration("0003_memory_text", _0003_memory_text),
]

_LEDGER = MetaData()
_ledger = Table(
    "schema_migrations",
    _LEDGER,
    Column("name", String(200), primary_key=True),
    Column("applied_at", String(32), nullable=False),
)


def applied_migrations(conn: Connection, *, create: bool = True) -> list[str]:
    """Names recorded in ``schema_migrations``, oldest first; empty for a fresh database. With ``create`` off
    a database without that table is refused (``CorruptDatabaseError``) instead of given one."""
    if not inspect(conn).has_table(_ledger.name):
        if not create:
            raise CorruptDatabaseError(describe(conn.engine.url), "holds no memkit tables (it was emptied or "
                                       "replaced, or it is another program's database)")
        _LEDGER.create_all(conn)
    rows = conn.execute(select(_ledger.c.name, _ledger.c.applied_at)).all()
    return [name for name, _ in sorted(rows, key=lambda r: (r.applied_at, r.name))]


def _known(done: set[str], names: list[str]) -> None:
    unknown = sorted(done - set(names))
    if unknown:
        raise StoreFormatError(
            f"the store's database has migrations this memkit does not know ({', '.join(unknown)}); "
            f"upgrade memkit to open it"
        )


def migrate(engine: Engine, migrations: list[Migration] | None = None, *, create: bool = True) -> list[str]:
    """Applies the pending migrations in one transaction; returns the names it applied (oldest first).

    ``create`` (making a new store) lets an empty database be given its tables; opening an existing store
    passes ``create=False``, so an emptied database is refused, never silently made anew. Raises
    ``StoreFormatError`` when the database records a migration this code does not know (a store written by a
    newer memkit). A migration that fails rolls back every statement of this call.
    """
    migrations = MIGRATIONS if migrations is None else migrations
    names = [m.name for m in migrations]
    if len(set(names)) != len(names) or names != sorted(names):
        raise ValueError(f"migration names must be unique and in order: {names}")
    with engine.begin() as conn:
        done = set(applied_migrations(conn, create=create))
        _known(done, names)
        pending = [m for m in migrations if m.name not in done]
        for m in pending:
            m.apply(conn)
            conn.execute(insert(_ledger).values(name=m.name, applied_at=utc_now()))
    return [m.name for m in pending]


def check_current(engine: Engine, migrations: list[Migration] | None = None) -> None:
    """For a reader, which must change nothing: the database has memkit's tables and every migration this
    code knows (``StoreFormatError`` naming the command that upgrades it otherwise)."""
    migrations = MIGRATIONS if migrations is None else migrations
    with engine.connect() as conn:
        done = set(applied_migrations(conn, create=False))
    _known(done, [m.name for m in migrations])
    pending = [m.name for m in migrations if m.name not in done]
    if pending:
        raise StoreFormatError(
            f"the store's database was written by an older memkit ({len(pending)} upgrade(s) pending: "
            f"{', '.join(pending)}); a command that writes (e.g. `memkit reindex`) upgrades it"
        )
