"""Migrations: applied once, recorded, transactional, appendable, and in agreement with the ORM classes."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, UniqueConstraint, inspect, select, text

from storage import Store, StoreFormatError
from storage.migrations import MIGRATIONS, Migration, applied_migrations, migrate
from storage.database import make_engine
from storage.schema import Base
from storehelpers import store_db_url


@pytest.fixture
def fresh_engine(db, new_db_url, tmp_path):
    """An engine on a new, empty database of the test's ``db`` (no writer lock: these tests are the only user)."""
    engine = make_engine(new_db_url() or f"sqlite:///{tmp_path / 'db.sqlite'}", write=False)
    yield engine
    engine.dispose()


def _ledger(engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text("SELECT name, applied_at FROM schema_migrations ORDER BY name"))]


def test_fresh_store_records_every_migration_once_and_reopen_applies_nothing(make_store, tmp_path):
    make_store().close()
    engine = make_engine(store_db_url(tmp_path / "store"), write=False)
    first = _ledger(engine)
    assert [name for name, _ in first] == [m.name for m in MIGRATIONS]

    with Store.open(tmp_path / "store", write=True):
        pass
    with Store.open(tmp_path / "store"):
        pass
    assert _ledger(engine) == first  # same rows, same applied_at: nothing re-applied
    assert migrate(engine) == []
    engine.dispose()


def test_appended_migration_runs_once(fresh_engine):
    engine = fresh_engine
    runs = []

    def add_notes(conn):
        runs.append(1)
        md = MetaData()
        Table("notes", md, Column("id", Integer, primary_key=True))
        md.create_all(conn)

    later = [*MIGRATIONS, Migration("9999_notes", add_notes)]
    assert migrate(engine) == [m.name for m in MIGRATIONS]
    assert migrate(engine, later) == ["9999_notes"]
    assert migrate(engine, later) == []
    assert runs == [1]
    assert "notes" in inspect(engine).get_table_names()
    with engine.connect() as conn:
        assert applied_migrations(conn)[-1] == "9999_notes"


def test_failing_migration_rolls_back_its_ddl_and_is_not_recorded(fresh_engine):
    engine = fresh_engine
    migrate(engine)

    def half_done(conn):
        md = MetaData()
        Table("half", md, Column("id", Integer, primary_key=True))
        md.create_all(conn)
        raise RuntimeError("boom in the middle of a migration")

    with pytest.raises(RuntimeError, match="boom"):
        migrate(engine, [*MIGRATIONS, Migration("9999_half", half_done)])
    assert "half" not in inspect(engine).get_table_names()
    assert [n for n, _ in _ledger(engine)] == [m.name for m in MIGRATIONS]


def test_first_migration_is_atomic_on_a_fresh_database(fresh_engine):
    engine = fresh_engine

    def fail(conn):
        raise RuntimeError("second migration fails")

    with pytest.raises(RuntimeError):
        migrate(engine, [*MIGRATIONS, Migration("9999_fail", fail)])
    tables = set(inspect(engine).get_table_names())
    assert not tables & {"collections", "documents", "memories"}


def test_database_from_a_newer_memkit_is_refused(make_store, tmp_path):
    make_store().close()
    engine = make_engine(store_db_url(tmp_path / "store"), write=False)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO schema_migrations VALUES ('9999_from_the_future', '2999-01-01T00:00:00Z')"))
    engine.dispose()
    with pytest.raises(StoreFormatError, match="9999_from_the_future"):
        Store.open(tmp_path / "store")


def test_orm_classes_match_the_migrated_schema(fresh_engine, db):
    engine = fresh_engine
    migrate(engine)
    insp = inspect(engine)
    for table in Base.metadata.sorted_tables:
        db_cols = {c["name"]: c["nullable"] for c in insp.get_columns(table.name)}
        orm_cols = {c.name: c.nullable for c in table.columns}
        assert db_cols == orm_cols, table.name
        db_uniques = {tuple(u["column_names"]) for u in insp.get_unique_constraints(table.name)}
        orm_uniques = {tuple(c.name for c in u.columns) for u in table.constraints if isinstance(u, UniqueConstraint)}
        orm_uniques |= {(c.name,) for c in table.columns if c.unique}
        assert db_uniques == orm_uniques, table.name
        db_fks = {
            (tuple(f["constrained_columns"]), f["referred_table"], f["options"].get("ondelete"))
            for f in insp.get_foreign_keys(table.name)
        }
        orm_fks = {((f.parent.name,), f.column.table.name, f.ondelete) for f in table.foreign_keys}
        assert db_fks == orm_fks, table.name
    with engine.connect() as conn:
        assert conn.execute(select(text("1"))).scalar() == 1
        if db == "sqlite":
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_an_older_store_gets_its_full_text_index_filled_from_the_keyed_memories(fresh_engine):
    """Upgrading through 0002-0003: the memories an older memkit wrote (keyed or not, with spans or without, the
    spans counted in characters) are in the full-text index afterwards, each with its own span's words."""
    from storage import lexical

    engine = fresh_engine
    migrate(engine, MIGRATIONS[:1])
    text_a = "Ünïcode first: the lighthouse keeper. Then: maps of the Sorrel delta."
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO collections (id, name, model_id, model_fingerprint, method, method_config, "
                          "generation, created_at) VALUES (1, 'default', 'm', 'fp', 'rag', '{}', 2, 'now')"))
        conn.execute(text("INSERT INTO documents (id, collection_id, source, content_hash, text, status, meta, "
                          "created_at) VALUES (1, 1, 'a', 'h1', :t, 'ready', '{}', 'now'), "
                          "(2, 1, 'b', 'h2', 'a railway that burns peat', 'ready', '{}', 'now')"), {"t": text_a})
        split = text_a.index("Then")
        rows = [(1, 1, 0, split, b"\x00" * 8), (2, 1, split, len(text_a), b"\x00" * 8), (3, 1, 0, 5, None),
                (4, 2, None, None, b"\x00" * 8)]
        for mid, did, start, end, key in rows:
            conn.execute(text("INSERT INTO memories (id, document_id, kind, shapes, dtypes, nbytes, span_start, "
                              "span_end, key, meta) VALUES (:i, :d, 'chunk', '{}', '{}', 0, :s, :e, :k, '{}')"),
                         {"i": mid, "d": did, "s": start, "e": end, "k": key})
    migrate(engine)
    with engine.connect() as conn:
        assert lexical.count(conn, 1) == 3  # memory 3 has no key: never searched, not indexed
        assert [i for i, _ in lexical.search(conn, 1, "lighthouse keeper", 5)] == [1]
        assert [i for i, _ in lexical.search(conn, 1, "Sorrel delta maps", 5)] == [2]
        assert [i for i, _ in lexical.search(conn, 1, "peat railway", 5)] == [4]
