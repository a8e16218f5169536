"""The single-writer lock of a store.

Owns: ``<store>/write.lock``, held with ``flock`` (exclusive, non-blocking) by the one process that writes the
store, with that process's pid written inside so a refused writer can say who holds it. The kernel drops an
flock when its file descriptor closes, so the lock also goes away when the holder exits or crashes; a stale
file with a dead pid never blocks anyone. flock locks belong to an open file description, so a second
``WriterLock`` on the same file conflicts even within one process. Readers take no lock.

A store whose database is PostgreSQL may be written from several machines (each with its own store directory,
or one shared over NFS, where flock is not to be relied on), so its writer also holds ``DatabaseWriterLock``: a
session-level advisory lock of the database (``pg_try_advisory_lock``) on a connection of its own, held as long
as that session lives, whose session names the holder (``application_name``: pid and host). ``database.py``
takes it with a writer's engine. Knows nothing of tables, FAISS, blobs or models.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import socket
import stat
import threading
import time
from pathlib import Path

from sqlalchemy import Connection, Engine, text

from storage.errors import StoreError, StoreLockedError

LOCK_FILE = "write.lock"
ACQUIRE_TRIES = 5
"""A writer retries this many times, 20 ms apart, before it is refused: a probe (``holder``) holds the lock
shared for a moment and must not turn a writer away."""


class WriterLock:
    """``flock`` on ``<store>/write.lock``; ``acquire`` raises ``StoreLockedError`` naming the holder's pid."""

    def __init__(self, store_root: Path):
        self.store_root = Path(store_root)
        self.path = self.store_root / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> WriterLock:
        if self._fd is not None:
            return self
        fd = _open_lock(self.path, os.O_RDWR | os.O_CREAT)
        try:
            for attempt in range(ACQUIRE_TRIES):
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if attempt == ACQUIRE_TRIES - 1:
                        raise
                    time.sleep(0.02)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise StoreLockedError(self.store_root, pid) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        """Gives the lock up; safe to call twice. The file stays, empty, for the next writer."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def holder(self) -> int | None:
        """Whether another process writes the store now, without taking the lock from anyone and without
        creating the file: its pid (0 when it wrote none yet), or None when nobody holds the lock."""
        if self._fd is not None:
            return None
        try:
            fd = _open_lock(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or 0
        finally:
            os.close(fd)  # also drops the shared lock, if it was taken
        return None

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _open_lock(path: Path, flags: int) -> int:
    """The lock file's descriptor: never through a link, never waiting on a FIFO, and only a regular file
    (``StoreError`` otherwise: a store given by someone else may hold anything there)."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise StoreError(f"cannot open the store's lock file {path} ({e.strerror}); it must be a regular file "
                         f"memkit can write (remove it if another program put something there)") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StoreError(f"the store's lock file {path} is not a regular file; remove it (memkit makes it anew)")
    return fd


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


# ---- the database's writer lock (PostgreSQL) ---------------------------------------------------------------

ADVISORY_NAMESPACE = "memkit store writer"
"""Hashed with the database's name and schema into the advisory lock's 64-bit key: everything of a store lives
in its database (every collection, each directory pointing at it), so one key per database and schema."""
HOLDER_NAME = re.compile(r"memkit writer pid (\d+)(?: on (\S+))?")
_HOLDERS = text(
    "SELECT l.pid, a.application_name, host(a.client_addr) FROM pg_locks l "
    "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND l.classid::bigint = :hi AND l.objid::bigint = :lo AND l.pid <> pg_backend_pid()"
)


def advisory_key(database: str, schema: str) -> int:
    """The signed 64-bit key of a store's writer lock in ``database``, tables in ``schema``."""
    digest = hashlib.sha256(f"{ADVISORY_NAMESPACE}\0{database}\0{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def holder_name(pid: int | None = None, host: str | None = None) -> str:
    """What a writer's lock session calls itself (``application_name``, at most 63 bytes)."""
    pid = os.getpid() if pid is None else pid
    host = socket.gethostname() if host is None else host
    host = re.sub(r"[^A-Za-z0-9._-]", "?", host) or "?"
    return f"memkit writer pid {pid} on {host}"[:63]


def _key_of(conn: Connection) -> int:
    database, schema = conn.execute(text("SELECT current_database(), coalesce(current_schema(), '')")).one()
    return advisory_key(database, schema)


def database_holder(conn: Connection) -> tuple[int | None, str | None] | None:
    """Who holds the writer lock of ``conn``'s database, other than ``conn``'s own session: ``(pid, host)`` as its
    session names them (``(None, client address)`` for a session that does not), or None when nobody does."""
    key = _key_of(conn) & 0xFFFF_FFFF_FFFF_FFFF
    row = conn.execute(_HOLDERS, {"hi": key >> 32, "lo": key & 0xFFFF_FFFF}).first()
    if row is None:
        return None
    named = HOLDER_NAME.fullmatch(row[1] or "")
    if named is None:
        return None, row[2]
    return int(named.group(1)), named.group(2)


class DatabaseWriterLock:
    """A PostgreSQL session-level advisory lock held on a connection of its own. ``engine`` must pool nothing
    (closing the connection ends the session, and with it the lock, also when the holder dies) and run in
    autocommit (the session sits idle, never inside a transaction); ``where`` is the database as it may be
    shown. ``acquire`` raises ``StoreLockedError`` naming the holder's pid and host. Thread-safe (a server's
    threads open connections, each asking ``alive``, at once)."""

    def __init__(self, engine: Engine, where: str):
        self._engine = engine
        self._where = where
        self._conn: Connection | None = None
        self._key: int | None = None
        self._mutex = threading.Lock()  # one statement at a time on the lock's connection

    @property
    def held(self) -> bool:
        return self._conn is not None

    def acquire(self) -> DatabaseWriterLock:
        with self._mutex:
            if self._conn is None:
                self._conn, self._key = self._take()
        return self

    def _take(self) -> tuple[Connection, int]:
        conn = self._engine.connect()
        try:
            conn.execute(text("SELECT set_config('application_name', :name, false)"), {"name": holder_name()})
            key = _key_of(conn)
            for attempt in range(ACQUIRE_TRIES):  # a holder that has just exited may take the server a moment
                if conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar():
                    break
                if attempt == ACQUIRE_TRIES - 1:
                    pid, host = database_holder(conn) or (None, None)
                    raise StoreLockedError(None, pid, database=self._where, host=host)
                time.sleep(0.05)
        except BaseException:
            conn.close()
            raise
        return conn, key

    def alive(self) -> bool:
        """Whether the lock's session still answers (it went away with a server restart, say, and the lock
        with it)."""
        with self._mutex:
            if self._conn is None:
                return False
            try:
                self._conn.exec_driver_sql("SELECT 1").close()
                return True
            except Exception:
                return False

    def release(self) -> None:
        """Gives the lock up and ends its session; safe to call twice."""
        with self._mutex:
            conn, self._conn = self._conn, None
            if conn is None:
                return
            try:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
            except Exception:  # the server is gone or the session broke: either way the lock went with it
                pass
            finally:
                conn.close()
