"""The writer's list of blobs not yet committed: what a crash between writing a blob and committing its row
leaves, found and deleted without listing every blob of the store.

Owns: ``<store>/write.pending``, one blob path a line. Before it writes a document's blobs, the writer appends
their paths and syncs the file; once the document's transaction has committed or rolled back, it empties the
file. A writer opening the store deletes each listed blob that no memory references (a crash's leftover) and
empties the file; ``verify`` counts such blobs as leftovers the next writer deletes, not as damage. Only the
writer (holding the lock) writes it. Knows nothing of SQL, FAISS or models: the caller says what is
referenced.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from storage.files import open_regular_fd, read_regular

PENDING_FILE = "write.pending"
MAX_BYTES = 16 << 20
"""The list holds one document's blobs at a time; a larger file is not one memkit wrote."""


class PendingBlobs:
    """``write.pending`` of one store."""

    def __init__(self, store_root: Path):
        self.path = Path(store_root) / PENDING_FILE
        self._filled = True  # unknown until the first clear: a crash may have left lines

    def add(self, rel_paths: Iterable[str]) -> None:
        """Lists ``rel_paths`` durably before they are written."""
        lines = "".join(f"{rel}\n" for rel in rel_paths)
        if not lines:
            return
        fd = open_regular_fd(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, lines.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        self._filled = True

    def clear(self) -> None:
        """Empties the list (the listed blobs are now referenced, or deleted)."""
        if self._filled:
            try:
                os.close(open_regular_fd(self.path, os.O_WRONLY | os.O_TRUNC))
            except FileNotFoundError:
                pass
            self._filled = False

    def read(self) -> list[str]:
        """The listed paths (empty when there is no list, or it is not a regular file memkit wrote)."""
        try:
            data = read_regular(self.path, MAX_BYTES)
        except OSError:
            return []
        return [line for line in data.decode("utf-8", "replace").splitlines() if line.strip()]

    def recover(self, referenced: Callable[[list[str]], set[str]], delete: Callable[[str], None]) -> list[str]:
        """For a writer opening the store: deletes (``delete``) each listed blob that ``referenced`` does not
        return, empties the list, and returns what it deleted."""
        listed = self.read()
        kept = referenced(listed) if listed else set()
        gone = [rel for rel in listed if rel not in kept]
        for rel in gone:
            delete(rel)
        self.clear()
        return gone
