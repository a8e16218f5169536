"""Durable file writes for the library's own files (trained models, training checkpoints, the GGUF hash memo).

Owns: ``write_atomic`` (a file replaced whole or not at all: a synced temporary file renamed over it, then its
folder synced), ``sync_file`` and ``sync_dir``. The store keeps its own helpers (``storage/files.py``, which also
sets file modes and refuses links): ``storage`` must not import ``memkit`` and ``memkit`` must not import
``storage``, so the two layers cannot share one. Knows nothing of what the bytes are.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def sync_file(path: Path) -> None:
    """Makes ``path``'s written bytes durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_dir(path: Path) -> None:
    """Makes a rename or create inside the folder ``path`` durable (nothing where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # a platform that cannot open a directory (Windows): the rename is what it has
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes | str) -> None:
    """``data`` (text is written as UTF-8) into ``path`` through a synced temporary file beside it, renamed over
    it, then the folder synced: a reader sees the old file or the new one, never a part. The temporary file is
    removed if anything fails."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sync_dir(path.parent)
