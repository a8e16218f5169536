"""Payload files: one safetensors file per memory record, written atomically and checksummed.

Owns: the ``blobs/`` folder of a store. ``write`` puts a dict of numpy arrays in
``blobs/<2 hex>/<uuid hex>.safetensors`` (temp file, fsync, rename, so a reader never sees half a file) and
returns its path relative to the store directory, the SHA-256 of its bytes and its size. ``read`` verifies that
checksum before parsing, and keeps recently read blobs in memory (they never change). Knows nothing of SQL,
documents, FAISS or models; the store maps ``BlobIntegrityError`` to ``CorruptBlobError`` with the ids it knows.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections import OrderedDict
from pathlib import Path

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

BLOB_DIR = "blobs"
SUFFIX = ".safetensors"
CACHE_BYTES = 64 * 2**20
"""Bytes of verified blobs ``read`` keeps in memory (a store's most recently read payloads)."""


class BlobIntegrityError(Exception):
    """A blob that is missing, unreadable or whose bytes do not match the recorded checksum."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


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


def write_atomic(path: Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temp file in the same folder, fsync and ``os.replace``."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


class BlobStore:
    """The payload files under ``<store>/blobs``; paths given and returned are relative to ``<store>``."""

    def __init__(self, store_root: Path, cache_bytes: int = CACHE_BYTES):
        self.store_root = Path(store_root)
        self.root = self.store_root / BLOB_DIR
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[tuple[str, str], tuple[dict[str, np.ndarray], int]] = OrderedDict()
        self._cached = 0

    def absolute(self, rel_path: str) -> Path:
        return self.store_root / rel_path

    def write(self, tensors: dict[str, np.ndarray]) -> tuple[str, str, int]:
        """Saves ``tensors`` as a new blob; returns ``(relative_path, sha256_hex, nbytes)``."""
        if not tensors:
            raise ValueError("a blob needs at least one tensor")
        arrays = {}
        for name, array in tensors.items():
            if not isinstance(name, str) or not isinstance(array, np.ndarray):
                raise TypeError(f"payload tensors must map str to numpy arrays, got {name!r}: {type(array)}")
            arrays[name] = np.ascontiguousarray(array)
        data = st_save(arrays)
        name = uuid.uuid4().hex
        rel = f"{BLOB_DIR}/{name[:2]}/{name}{SUFFIX}"
        path = self.absolute(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)
        return rel, hashlib.sha256(data).hexdigest(), len(data)

    def read(self, rel_path: str, checksum: str) -> dict[str, np.ndarray]:
        """The tensors of a blob, after checking its bytes against ``checksum``. Blobs never change once
        written, so up to ``cache_bytes`` of recently read ones are kept, verified, in memory; the arrays
        returned are read-only (copy one to change it)."""
        entry = self._cache.get((rel_path, checksum))
        if entry is not None:
            self._cache.move_to_end((rel_path, checksum))
            return dict(entry[0])
        data = self.read_verified(rel_path, checksum)
        try:
            tensors = st_load(data)
        except Exception as e:  # safetensors raises its own error types for malformed headers
            raise BlobIntegrityError(self.absolute(rel_path), f"is not a readable safetensors file ({e})") from e
        for array in tensors.values():
            array.setflags(write=False)
        if len(data) <= self.cache_bytes:
            self._cache[(rel_path, checksum)] = (tensors, len(data))
            self._cached += len(data)
            while self._cached > self.cache_bytes:
                _, (_, size) = self._cache.popitem(last=False)
                self._cached -= size
        return dict(tensors)

    def read_verified(self, rel_path: str, checksum: str) -> bytes:
        path = self.absolute(rel_path)
        try:
            data = path.read_bytes()
        except FileNotFoundError as e:
            raise BlobIntegrityError(path, "is missing") from e
        except OSError as e:
            raise BlobIntegrityError(path, f"cannot be read ({e.strerror})") from e
        if hashlib.sha256(data).hexdigest() != checksum:
            raise BlobIntegrityError(path, "failed its checksum")
        return data

    def exists(self, rel_path: str) -> bool:
        return self.absolute(rel_path).is_file()

    def delete(self, rel_path: str) -> None:
        """Removes a blob (and its folder once empty); a blob already gone is not an error."""
        for key in [k for k in self._cache if k[0] == rel_path]:
            self._cached -= self._cache.pop(key)[1]
        path = self.absolute(rel_path)
        path.unlink(missing_ok=True)
        try:
            path.parent.rmdir()
        except OSError:  # not empty, or already gone
            pass

    def list_all(self) -> list[str]:
        """Every file under ``blobs/`` (blobs and leftover temp files), relative to the store, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.relative_to(self.store_root).as_posix() for p in self.root.rglob("*") if p.is_file())
