"""The file primitives every part of the store uses: atomic writes and guarded reads.

Owns: ``write_atomic`` (temp file, fsync, rename: a reader sees the old file or the new one, never half of
one), ``write_atomic_with`` (the same for a writer that fills the file itself), ``open_regular`` and
``read_regular`` (a store file is opened without following a link and without waiting on a FIFO, and read
only when it is a regular file, up to a size the caller bounds), and the modes files and folders are made
with (never group- or world-writable, whatever the umask). A store given by someone else can hold a link, a
FIFO or a device where a file should be: reading it must neither leave the store, hang nor fill the memory.
Knows nothing of what the files hold.
"""

from __future__ import annotations

import hashlib
import os
import stat
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

FILE_MODE = 0o644
"""Files a store writes: never group- or world-writable, whatever the umask (the umask may take more away)."""
DIR_MODE = 0o755


class StoreFileError(OSError):
    """A store file that is not a regular file (a link, FIFO, device, folder) or is larger than it may be."""


def fsync_dir(path: Path) -> None:
    """Makes a rename or create inside ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temp_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def write_atomic(path: Path, data: bytes | memoryview | list[bytes]) -> None:
    """Writes ``data`` (or its parts one after another) to ``path`` through a temp file in the same folder,
    fsync and ``os.replace``; the file is created with ``FILE_MODE``."""
    tmp = _temp_for(path)
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE), "wb") as f:
            for part in data if isinstance(data, list) else [data]:
                f.write(part)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_atomic_with(path: Path, write: Callable[[Path], None]) -> str:
    """``write_atomic`` for a writer that fills a file itself (``write(tmp)``, e.g. FAISS streaming an index to
    disk, so the bytes are never held in memory twice); returns the SHA-256 of what it wrote, read back in
    chunks."""
    tmp = _temp_for(path)
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
        write(tmp)
        os.chmod(tmp, FILE_MODE & ~_umask())  # a writer that re-creates the file gets the store's mode back
        digest = hashlib.sha256()
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return digest.hexdigest()


def _umask() -> int:
    """The process's umask, read without changing it (Linux; 0o022 where /proc does not say)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def open_regular(path: Path, max_bytes: int | None = None) -> BinaryIO:
    """``path`` opened for reading, unbuffered, if it is a regular file (a link is not followed, a FIFO not
    waited on) of at most ``max_bytes``; ``FileNotFoundError`` if absent, ``StoreFileError`` otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise StoreFileError(f"{path} is not a regular file")
        if max_bytes is not None and info.st_size > max_bytes:
            raise StoreFileError(f"{path} is larger ({info.st_size} bytes) than such a file can be ({max_bytes})")
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


def open_regular_fd(path: Path, flags: int) -> int:
    """A descriptor of ``path`` opened with ``flags`` (created with ``FILE_MODE`` if asked) when it is a regular
    file: never through a link, never waiting on a FIFO; ``StoreFileError`` otherwise."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK, FILE_MODE)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise StoreFileError(f"{path} cannot be opened ({e.strerror}); a store's files are regular files") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StoreFileError(f"{path} is not a regular file")
    return fd


def read_range(path: Path, offset: int, nbytes: int) -> bytes:
    """``nbytes`` of ``path`` at ``offset`` through ``open_regular``; ``StoreFileError`` when the file ends
    before (a truncated segment reads as damage, never as a short record)."""
    if offset < 0 or nbytes < 0:
        raise StoreFileError(f"{path}: a record at offset {offset} of {nbytes} bytes cannot exist")
    with open_regular(path) as f:
        data = os.pread(f.fileno(), nbytes, offset)
    if len(data) != nbytes:
        raise StoreFileError(f"{path} ends before the record at offset {offset} ({nbytes} bytes) it should hold")
    return data


def read_regular(path: Path, max_bytes: int | None = None) -> bytes:
    """The bytes of ``path`` through ``open_regular``; a link (``ELOOP``) reads as ``StoreFileError`` too."""
    try:
        with open_regular(path, max_bytes) as f:
            return f.read() if max_bytes is None else f.read(max_bytes + 1)
    except OSError as e:
        if e.errno == 40:  # ELOOP: O_NOFOLLOW met a link
            raise StoreFileError(f"{path} is a link; a store's files are never links") from None
        raise
