"""Payload files: safetensors records, written atomically and checksummed, many records to a file.

Owns: the ``blobs/`` folder of a store. ``write_segment`` puts the records of one write (each a dict of numpy
arrays, serialised as safetensors) one after another in ``blobs/<2 hex>/<uuid hex>.seg`` (temp file, fsync,
rename, so a reader never sees half a file: one fsync for a whole batch of documents) and returns, per
record, the file's path relative to the store directory, the record's offset in it, the SHA-256 of its bytes
and its size. ``write`` is the same for one record alone (``.safetensors``, offset 0; older stores hold only
such files). ``read`` verifies a record's checksum before parsing, and keeps recently read records in memory
(they never change). A segment file is deleted when no memory references it any more; the bytes of removed
records inside a segment that others still use stay until then. Knows nothing of SQL, documents, FAISS or
models; the store maps ``BlobIntegrityError`` to ``CorruptBlobError`` with the ids it knows.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import uuid
from collections import OrderedDict
from pathlib import Path

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from storage.files import DIR_MODE, StoreFileError, read_range, read_regular, write_atomic

BLOB_DIR = "blobs"
SUFFIX = ".safetensors"
SEGMENT_SUFFIX = ".seg"
CACHE_BYTES = 64 * 2**20
"""Bytes of verified blobs ``read`` keeps in memory (a store's most recently read payloads)."""
_BLOB_PATH = re.compile(rf"{BLOB_DIR}/([0-9a-f]{{2}})/\1[0-9a-f]{{30}}(\{SUFFIX}|\{SEGMENT_SUFFIX})")
"""The only blob paths memkit writes: ``blobs/<2 hex>/<the same 2 hex + 30 hex>`` + ``.safetensors`` or
``.seg``."""
Located = tuple[str, int, str, int]
"""Where a record was written: ``(relative path, offset, sha256 hex, nbytes)``."""


class BlobIntegrityError(Exception):
    """A blob that is missing, unreadable or whose bytes do not match the recorded checksum."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class BlobStore:
    """The payload files under ``<store>/blobs``; paths given and returned are relative to ``<store>``."""

    def __init__(self, store_root: Path, cache_bytes: int = CACHE_BYTES):
        self.store_root = Path(store_root)
        self.root = self.store_root / BLOB_DIR
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[tuple[str, str], tuple[dict[str, np.ndarray], int]] = OrderedDict()
        self._cached = 0

    def absolute(self, rel_path: str) -> Path:
        """The file of a blob path read from the database; a path memkit would never have written (outside
        ``blobs/``, ``..``, absolute, another shape) raises ``BlobIntegrityError``, so a hand-edited row can
        make the store neither read nor delete a file elsewhere."""
        if not isinstance(rel_path, str) or not _BLOB_PATH.fullmatch(rel_path):
            raise BlobIntegrityError(Path(str(rel_path)), "has a path memkit never writes (outside blobs/ or "
                                     "of another shape); refused")
        return self.store_root / rel_path

    @staticmethod
    def new_path(segment: bool = False) -> str:
        """A fresh blob path (relative to the store), for ``write(tensors, rel=...)`` or, with ``segment``,
        ``write_segment(records, rel=...)``."""
        name = uuid.uuid4().hex
        return f"{BLOB_DIR}/{name[:2]}/{name}{SEGMENT_SUFFIX if segment else SUFFIX}"

    @staticmethod
    def encode(tensors: dict[str, np.ndarray]) -> bytes:
        """One record's bytes (safetensors); ``ValueError``/``TypeError`` for an empty or ill-typed record."""
        if not tensors:
            raise ValueError("a blob needs at least one tensor")
        arrays = {}
        for name, array in tensors.items():
            if not isinstance(name, str) or not isinstance(array, np.ndarray):
                raise TypeError(f"payload tensors must map str to numpy arrays, got {name!r}: {type(array)}")
            arrays[name] = np.ascontiguousarray(array)
        return st_save(arrays)

    def write(self, tensors: dict[str, np.ndarray], rel: str | None = None) -> tuple[str, str, int]:
        """Saves ``tensors`` as a new blob file of its own (at ``rel`` from ``new_path``, or a fresh path);
        returns ``(relative_path, sha256_hex, nbytes)``."""
        data = self.encode(tensors)
        rel = rel or self.new_path()
        self._write_file(rel, [data])
        return rel, hashlib.sha256(data).hexdigest(), len(data)

    def write_segment(self, records: list[dict[str, np.ndarray]], rel: str | None = None) -> list[Located]:
        """Saves several records in one new segment file (at ``rel`` from ``new_path(segment=True)``, or a
        fresh path), with one fsync; returns ``(relative_path, offset, sha256_hex, nbytes)`` per record."""
        parts = [self.encode(tensors) for tensors in records]
        rel = rel or self.new_path(segment=True)
        out, offset = [], 0
        for data in parts:
            out.append((rel, offset, hashlib.sha256(data).hexdigest(), len(data)))
            offset += len(data)
        self._write_file(rel, parts)
        return out

    def _write_file(self, rel: str, parts: list[bytes]) -> None:
        path = self.absolute(rel)
        self.root.mkdir(mode=DIR_MODE, exist_ok=True)
        path.parent.mkdir(mode=DIR_MODE, exist_ok=True)
        write_atomic(path, parts)

    def read(self, rel_path: str, checksum: str, offset: int | None = None,
             nbytes: int | None = None) -> dict[str, np.ndarray]:
        """The tensors of a record (the whole file, or ``nbytes`` at ``offset`` of a segment), after checking
        its bytes against ``checksum``. Records never change once written, so up to ``cache_bytes`` of recently
        read ones are kept, verified, in memory; the arrays returned are read-only (copy one to change it)."""
        key = (rel_path, offset, checksum)
        entry = self._cache.get(key)
        if entry is not None:
            self._cache.move_to_end(key)
            return dict(entry[0])
        data = self.read_verified(rel_path, checksum, offset, nbytes)
        try:
            tensors = st_load(data)
        except Exception as e:  # safetensors raises its own error types for malformed headers
            raise BlobIntegrityError(self.absolute(rel_path), f"is not a readable safetensors file ({e})") from e
        for array in tensors.values():
            array.setflags(write=False)
        if len(data) <= self.cache_bytes:
            self._cache[key] = (tensors, len(data))
            self._cached += len(data)
            while self._cached > self.cache_bytes:
                _, (_, size) = self._cache.popitem(last=False)
                self._cached -= size
        return dict(tensors)

    def read_verified(self, rel_path: str, checksum: str, offset: int | None = None,
                      nbytes: int | None = None) -> bytes:
        """The bytes of a record (a whole file, or ``nbytes`` at ``offset``) after checking them against
        ``checksum``. Only a regular file in a real folder of ``blobs/`` is read (no link followed, no device or
        FIFO opened)."""
        path = self.absolute(rel_path)
        self._inside(path)
        try:
            data = read_regular(path) if offset is None else read_range(path, offset, nbytes or 0)
        except FileNotFoundError as e:
            raise BlobIntegrityError(path, "is missing") from e
        except StoreFileError as e:
            raise BlobIntegrityError(path, f"is refused: {e}") from e
        except OSError as e:
            raise BlobIntegrityError(path, f"cannot be read ({e.strerror})") from e
        if hashlib.sha256(data).hexdigest() != checksum:
            raise BlobIntegrityError(path, "failed its checksum")
        return data

    def _real_folders(self, path: Path) -> bool:
        """Whether every folder from ``blobs/`` down to ``path``'s own is a real folder, not a link (checked
        without resolving, so a link loop cannot hang or crash it); a folder not there yet counts as real."""
        folder = self.store_root
        for part in path.parent.relative_to(self.store_root).parts:
            folder = folder / part
            try:
                mode = os.lstat(folder).st_mode
            except FileNotFoundError:
                return True
            except OSError:
                return False
            if not stat.S_ISDIR(mode):
                return False
        return True

    def _inside(self, path: Path) -> None:
        """Refuses a blob reached through a linked folder (which could lead out of the store)."""
        if not self._real_folders(path):
            raise BlobIntegrityError(path, "lies in a linked or odd folder, possibly outside the store; refused")

    def exists(self, rel_path: str) -> bool:
        path = self.absolute(rel_path)
        try:
            return self._real_folders(path) and stat.S_ISREG(os.lstat(path).st_mode)
        except OSError:
            return False

    def delete(self, rel_path: str) -> None:
        """Removes a blob (and its folder once empty); a blob already gone is not an error. A path memkit
        never writes, or one reached through a linked folder, raises ``BlobIntegrityError``; nothing is deleted."""
        path = self.absolute(rel_path)
        self._inside(path)
        for key in [k for k in self._cache if k[0] == rel_path]:  # every record of the file
            self._cached -= self._cache.pop(key)[1]
        path.unlink(missing_ok=True)
        try:
            path.parent.rmdir()
        except OSError:  # not empty, or already gone
            pass

    def with_temps(self, rel_path: str) -> list[str]:
        """``rel_path`` and the temp files an interrupted atomic write of it may have left beside it."""
        path = self.absolute(rel_path)
        if not self._real_folders(path) or not path.parent.is_dir():
            return [rel_path]
        temps = sorted(p.relative_to(self.store_root).as_posix() for p in path.parent.glob(f".{path.name}.*.tmp"))
        return [rel_path, *temps]

    def list_all(self) -> list[str]:
        """Every entry under ``blobs/`` that is not a real folder (blobs, leftover temp files, links, anything
        else), relative to the store, sorted; links are listed, never followed."""
        if not self._real_folders(self.root / "x"):
            return [BLOB_DIR]
        out = []
        for folder, dirs, files in os.walk(self.root, followlinks=False):
            base = Path(folder)
            out += [(base / name).relative_to(self.store_root).as_posix() for name in files]
            out += [(base / name).relative_to(self.store_root).as_posix() for name in dirs
                    if (base / name).is_symlink()]
        return sorted(out)

    def remove_stray(self, rel_path: str) -> None:
        """Deletes an entry ``list_all`` gave that no memory references (a crash's leftover, or anything else
        found there): the file or link itself (a link is never followed), then its folders while they are
        empty, up to ``blobs/``."""
        parts = Path(rel_path).parts
        path = self.store_root / rel_path
        if len(parts) < 2 or parts[0] != BLOB_DIR or ".." in parts or Path(rel_path).is_absolute() \
                or not self._real_folders(path):
            raise BlobIntegrityError(path, "is not an entry of the store's blob folder; refused")
        path.unlink(missing_ok=True)
        folder = path.parent
        while folder != self.root:
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent
