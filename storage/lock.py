"""The single-writer lock of a store.

Owns: ``<store>/write.lock``, held with ``flock`` (exclusive, non-blocking) by the one process that writes the
store, with that process's pid written inside so a refused writer can say who holds it. The kernel drops an
flock when its file descriptor closes, so the lock also goes away when the holder exits or crashes; a stale
file with a dead pid never blocks anyone. flock locks belong to an open file description, so a second
``WriterLock`` on the same file conflicts even within one process. Readers take no lock. Knows nothing of SQL,
FAISS, blobs or models.
"""

from __future__ import annotations

import fcntl
import os
import stat
import time
from pathlib import Path

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
