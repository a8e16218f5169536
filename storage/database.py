"""Opening the store's SQL database, and what its failures mean to a user.

Owns: checking a database URL before a store is made on it (``check_url``), checking that an existing SQLite
file is a database before connecting to it, so that opening never creates one (``open_engine``), the engine's
SQLite settings (WAL, foreign keys, a busy timeout, real transactions), and the translation of the driver's
errors into store errors in the one place every statement passes through (the engine's ``handle_error``
event): a damaged file becomes ``CorruptDatabaseError``, a database that cannot be opened or reached
``DatabaseUnavailableError``; every other error (a constraint, a busy database) passes through unchanged.
On a database server (PostgreSQL) the unavailable cases are a server that cannot be reached, a refused login,
a database that does not exist, missing privileges, a read-only server and a lost connection, each one line
naming the database (password hidden, and taken out of the driver's message should it appear there).
A writer's engine on PostgreSQL also holds the database's writer lock (``lock.DatabaseWriterLock``, taken when
the engine is made, given back when it is disposed); a connection the pool opens later checks that the lock's
session still lives, so a writer whose lock went with its session (a server restart) stops instead of writing
beside another. Damage SQLite does not notice while reading (a page of garbage read as values) surfaces as some
other error in the code that reads it; ``diagnose`` then runs SQLite's own check and names the damage instead.
Knows nothing of tables, blobs or FAISS.
"""

from __future__ import annotations

import functools
import os
import re
import stat
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.engine.url import URL
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.pool import NullPool

from storage.errors import CorruptDatabaseError, DatabaseUnavailableError, DatabaseURLError, StoreError
from storage.lock import DatabaseWriterLock, database_holder

BUSY_TIMEOUT_MS = 10_000
SQLITE_HEADER = b"SQLite format 3\x00"
_CORRUPT = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
_UNAVAILABLE = ("SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_FULL", "SQLITE_READONLY", "SQLITE_PERM", "SQLITE_AUTH",
                "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_TOOBIG", "SQLITE_NOMEM")
_SERVER_UNAVAILABLE = ("08", "28", "3D", "53", "57P", "42501", "25006")
"""SQLSTATE prefixes of a server database that cannot be used as it is (connection, login, no such database,
resources, shut down, no privilege, read-only): ``DatabaseUnavailableError``."""
CONNECT_TIMEOUT_S = 10
"""How long a libpq driver waits for a server to answer, unless the URL says ``connect_timeout``."""
_LIBPQ_DRIVERS = ("psycopg", "psycopg2")
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}
"""For the writer lock's idle session: a dead peer is noticed in about a minute, not the system's two hours."""


def describe(url: str | URL) -> str:
    """A URL as it may be shown to a user: the password hidden; a SQLite file as its path."""
    parsed = make_url(url) if isinstance(url, str) else url
    path = sqlite_path(parsed)
    return str(path) if path is not None else parsed.render_as_string(hide_password=True)


def sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite URL, or None for another database or SQLite in memory."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    database = url.database
    if database.startswith("file:"):  # URI form: file:PATH?...
        database = database[5:].split("?", 1)[0]
    return Path(database)


def parse_url(url: str, origin: str = "--db-url") -> URL:
    """``url`` parsed, with its driver importable; ``DatabaseURLError`` naming where the URL came from (a flag
    or the store's ``store.json``) otherwise. A password is never shown."""
    try:
        parsed = make_url(url)
        shown = parsed.render_as_string(hide_password=True)
    except (ArgumentError, ValueError) as e:
        raise DatabaseURLError("(unparseable)", str(e).splitlines()[0], origin) from None
    try:
        dialect = parsed.get_dialect()
        if hasattr(dialect, "import_dbapi"):
            dialect.import_dbapi()  # the driver itself, so a missing one is named now, not as a traceback later
    except (ArgumentError, NoSuchModuleError, ValueError) as e:
        raise DatabaseURLError(shown, str(e).splitlines()[0], origin) from None
    except ImportError as e:
        raise DatabaseURLError(shown, f"its driver is not installed ({e})", origin) from None
    return parsed


def check_url(url: str) -> URL:
    """Checks a URL a new store would be made on: parseable, a known driver, and for SQLite a folder that
    exists and a path that is not something other than a file. Touches nothing."""
    parsed = parse_url(url)
    shown = parsed.render_as_string(hide_password=True)
    path = sqlite_path(parsed)
    if parsed.get_backend_name() == "sqlite" and path is None:
        raise DatabaseURLError(shown, "a SQLite database in memory would vanish with the command; give a file")
    if path is not None:
        folder = path.parent if path.parent != Path("") else Path(".")
        if not folder.is_dir():
            raise DatabaseURLError(shown, f"folder {folder} does not exist; create it first or choose another path")
        if path.exists() and not path.is_file():
            raise DatabaseURLError(shown, f"{path} exists and is not a file")
    return parsed


def require_sqlite_file(path: Path) -> None:
    """Checks that an existing store's SQLite file is there and looks like a database, before any connection
    (which would create a missing file, or turn an emptied one into a fresh database)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise DatabaseUnavailableError(path, "does not exist; restore it from a backup") from None
    except OSError as e:
        raise DatabaseUnavailableError(path, f"cannot be read ({e.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise DatabaseUnavailableError(path, "is not a regular file")
    if info.st_size == 0:
        raise CorruptDatabaseError(path, "is empty (0 bytes): it was emptied or replaced")
    try:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except OSError as e:
        raise DatabaseUnavailableError(path, f"cannot be read ({e.strerror})") from None
    if head != SQLITE_HEADER:
        raise CorruptDatabaseError(path, "does not start with a SQLite header")


def integrity_problems(engine: Engine, limit: int = 20) -> list[str]:
    """What SQLite's ``PRAGMA quick_check`` finds wrong with the database (empty when sound; always empty for
    other databases, which check themselves). Reads every page: seconds on a database of gigabytes."""
    if engine.dialect.name != "sqlite":
        return []
    with engine.connect() as conn:
        rows = [str(r) for r in conn.exec_driver_sql(f"PRAGMA quick_check({int(limit)})").scalars()]
    if rows == ["ok"]:
        return []
    lines = [line.strip() for row in rows for line in row.splitlines()]
    return [line for line in lines if line and not line.startswith("***")]


def diagnose(engine: Engine, error: BaseException) -> None:
    """Called with an unexpected error raised while reading the database: raises ``CorruptDatabaseError``
    (from ``error``) when SQLite finds the file damaged, else returns so the caller re-raises ``error``."""
    try:
        problems = integrity_problems(engine, limit=3)
    except CorruptDatabaseError as e:
        raise e from error
    except Exception:  # the check itself could not run: the original error says more
        return
    if problems:
        raise CorruptDatabaseError(describe(engine.url), f"is damaged ({problems[0]})") from error


def open_engine(url: str, *, write: bool) -> Engine:
    """An engine on an existing store's database (the URL from its ``store.json``); a SQLite file is checked
    first and never created, and only a writer may switch it to WAL. A writer's engine on PostgreSQL holds the
    database's writer lock (``StoreLockedError`` when another process holds it)."""
    parsed = parse_url(url, origin="store.json")
    path = sqlite_path(parsed)
    if path is not None:
        require_sqlite_file(path)
    return make_engine(url, wal=write, write=write)


def make_engine(url: str, *, wal: bool = True, write: bool = True) -> Engine:
    """An engine for ``url`` whose driver errors are translated into store errors; on SQLite: the WAL journal
    (set by a writer, ``wal``; it is then the file's lasting mode, so readers, which change nothing, find it),
    foreign keys on, a busy timeout, and real transactions. On a database server: a bounded connect wait,
    connections checked before use (a server restarted under a long-running reader), and for a writer
    (``write``) the database's writer lock, held until the engine is disposed.

    pysqlite by default neither opens a transaction before DDL nor lets SQLAlchemy control BEGIN, which would
    make migrations non-atomic; the driver's own handling is switched off and SQLAlchemy emits BEGIN itself.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(url)
        _translate_errors(engine)
        _sqlite_settings(engine, wal)
        return engine
    engine = create_engine(url, pool_pre_ping=True, connect_args=_connect_args(parsed))
    _translate_errors(engine)
    if write and parsed.get_backend_name() == "postgresql":
        _hold_writer_lock(engine)
    return engine


def _connect_args(url: URL, **extra) -> dict:
    if url.get_driver_name() not in _LIBPQ_DRIVERS:
        return {}
    args = {} if "connect_timeout" in url.query else {"connect_timeout": CONNECT_TIMEOUT_S}
    args.update(extra)
    return args


def _translate_errors(engine: Engine) -> None:
    where = describe(engine.url)
    password = engine.url.password

    @event.listens_for(engine, "handle_error")
    def _translate(context) -> None:  # noqa: ANN001 (SQLAlchemy's ExceptionContext)
        error = context.original_exception
        name = getattr(error, "sqlite_errorname", None) or ""
        if name.startswith(_CORRUPT):
            raise CorruptDatabaseError(where, f"is damaged ({error})") from error
        if name.startswith(_UNAVAILABLE):
            raise DatabaseUnavailableError(where, f"cannot be used ({error})") from error
        if engine.dialect.name == "sqlite":
            return
        state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None) or ""
        if context.is_pre_ping:  # a pooled connection the server ended (a restart): the pool makes a new one
            if state.startswith(("08", "57P")):
                context.is_disconnect = True
            return
        if context.connection is None or context.is_disconnect or state.startswith(_SERVER_UNAVAILABLE):
            raise DatabaseUnavailableError(where, server_problem(error, state, password)) from error


def server_problem(error: BaseException, state: str = "", password: str | None = None) -> str:
    """What a database server's error means to a user, in one line (after the database's name): it does not
    exist, the login was refused, a privilege is missing, the server is read-only, or it cannot be reached."""
    message = " ".join(str(error).split()) or type(error).__name__
    message = re.sub(r"^connection failed: ", "", message)
    message = re.sub(r'^connection to server at "[^"]*"(?:\s*\([^)]*\))?, port \d+ failed: ', "", message)
    message = re.sub(r'^connection to server on socket "[^"]*" failed: ', "", message)
    message = re.sub(r"^(?:FATAL|ERROR):\s+", "", message)
    message = re.sub(r"\s*Is the server running on that host and accepting TCP/IP connections\?", "", message)
    if password:
        message = message.replace(password, "***")
    if len(message) > 300:
        message = message[:297] + "..."
    missing = re.search(r'database "([^"]*)" does not exist', message)
    if missing or state == "3D000":
        name = missing.group(1) if missing else "it"
        return f"does not exist on its server; create it first (e.g. `createdb {name}`) or fix the URL"
    if state.startswith("28") or re.search(r"authentication failed|no pg_hba\.conf entry|role \"[^\"]*\" does "
                                           r"not exist|password", message):
        return f"refused the login ({message}); check the user name and password in the database URL"
    if state == "42501":
        return (f"cannot be used ({message}): the database user lacks a privilege memkit needs (to create tables "
                f"on a new store: CREATE on the schema; then to read and write them)")
    if state == "25006":
        return f"cannot be written ({message}): the server is read-only (a standby?); use the primary"
    if state.startswith(("53", "57P")):
        return f"cannot be used now ({message})"
    return f"cannot be reached ({message}); is the server running, and are the URL's host and port right?"


def _hold_writer_lock(engine: Engine) -> None:
    """The database's writer lock, on a session of its own, for the life of ``engine``; a connection ``engine``
    opens later first checks that this session is still there (``DatabaseUnavailableError`` if not)."""
    where = describe(engine.url)
    lock_engine = create_engine(engine.url, poolclass=NullPool, isolation_level="AUTOCOMMIT",
                                connect_args=_connect_args(engine.url, **_KEEPALIVES))
    _translate_errors(lock_engine)
    lock = DatabaseWriterLock(lock_engine, where)
    try:
        lock.acquire()
    except BaseException:
        lock_engine.dispose()
        engine.dispose()
        raise

    @event.listens_for(engine, "engine_disposed")
    def _release(_engine) -> None:  # noqa: ANN001
        lock.release()
        lock_engine.dispose()

    @event.listens_for(engine.pool, "connect")
    def _still_locked(_dbapi_connection, _record) -> None:  # noqa: ANN001
        if lock.held and not lock.alive():  # (a store closed, its lock given back, may still read)
            raise DatabaseUnavailableError(where, "lost its writer lock (the session holding it ended: a server "
                                                  "restart or a broken connection); open the store again")


def _sqlite_settings(engine: Engine, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # noqa: ANN001 (DB-API objects)
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if wal:
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:  # noqa: ANN001
        connection.exec_driver_sql("BEGIN")


def database_writer(engine: Engine) -> int | None:
    """Whether another session holds the writer lock of a server database (a writer on another machine, which
    no lock file shows): its pid as it named itself (0 when it did not), or None when none does, for SQLite,
    and when the question cannot be asked."""
    if engine.dialect.name != "postgresql":
        return None
    try:
        with engine.connect() as conn:
            found = database_holder(conn)
            conn.rollback()
    except StoreError:
        return None
    if found is None:
        return None
    return found[0] or 0


def encodable(text: str) -> bool:
    """Whether ``text`` can be sent to the database (a lone surrogate cannot be encoded)."""
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def guarded(fn):
    """For the methods of an object holding ``_engine`` and ``_guarding`` (the ``Store``): an unexpected error
    while reading the database (damage SQLite did not notice turns up as a wrong value that breaks the code
    reading it) is checked with SQLite's own integrity check, so damage is reported as
    ``CorruptDatabaseError``, not as the error it happened to cause."""

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        outer = not self._guarding  # a guarded method calling another checks once, at the outermost call
        self._guarding = True
        try:
            return fn(self, *args, **kwargs)
        except StoreError:
            raise
        except Exception as e:
            if outer:
                diagnose(self._engine, e)
            raise
        finally:
            if outer:
                self._guarding = False

    return wrapper
