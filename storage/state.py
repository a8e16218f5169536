"""Method state files: named sets of arrays a collection keeps beside its documents (e.g. trained weights).

Owns: the ``state/<collection_id>/`` folder of a store. ``save`` writes one safetensors file per name
(temp file, fsync, rename, so a reader sees the old state or the new one, never half a file) whose header
metadata carries a format tag and the SHA-256 of its contents; ``load`` recomputes that checksum before
returning anything. The checksum covers every array's name, dtype, shape and bytes, in name order, so it does
not depend on how safetensors lays the file out. Knows nothing of SQL, documents, FAISS, models or torch: a
state is a dict of numpy arrays made by someone else; the store maps ``StateIntegrityError`` to its own error.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from storage.files import DIR_MODE, StoreFileError, read_regular, write_atomic

STATE_DIR = "state"
SUFFIX = ".safetensors"
FORMAT = "memkit-state/1"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class StateIntegrityError(Exception):
    """A state file that is unreadable, not a memkit state, or whose contents fail their checksum."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def check_name(name: str) -> str:
    """``name`` if it is a safe file stem (letters, digits, ``_ . -``; up to 100), else ValueError."""
    if not isinstance(name, str) or not _NAME.match(name) or name.endswith(".tmp"):
        raise ValueError(f"state name {name!r} must be 1-100 letters, digits, '_', '.' or '-', "
                         f"starting with a letter or digit")
    return name


def content_checksum(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over each array's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.require(arrays[name], requirements="C")
        head = json.dumps([name, array.dtype.str, list(array.shape)]).encode()
        digest.update(len(head).to_bytes(8, "little") + head)
        digest.update(array.tobytes())
    return digest.hexdigest()


def _metadata(data: bytes) -> dict:
    """The ``__metadata__`` of a safetensors byte string (its header is 8 bytes of length, then JSON)."""
    if len(data) < 8:
        raise ValueError("shorter than a safetensors header")
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8:
        raise ValueError("header length past the end of the file")
    header = json.loads(data[8:8 + size])
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else {}


class StateFiles:
    """The state files of one collection, under ``<store>/state/<collection_id>/``."""

    def __init__(self, store_root: Path, collection_id: int):
        self.root = Path(store_root) / STATE_DIR / str(collection_id)

    def path(self, name: str) -> Path:
        return self.root / f"{check_name(name)}{SUFFIX}"

    def save(self, name: str, tensors: dict[str, np.ndarray]) -> int:
        """Replaces state ``name`` with ``tensors`` atomically; returns the file's size in bytes."""
        path = self.path(name)
        if not tensors:
            raise ValueError(f"state {name!r} needs at least one array")
        arrays = {}
        for key, array in tensors.items():
            if not isinstance(key, str) or not isinstance(array, np.ndarray):
                raise TypeError(f"state arrays must map str to numpy arrays, got {key!r}: {type(array)}")
            arrays[key] = np.require(array, requirements="C")  # keeps 0-d arrays 0-d
        data = st_save(arrays, metadata={"format": FORMAT, "name": name, "sha256": content_checksum(arrays)})
        self.root.parent.mkdir(mode=DIR_MODE, exist_ok=True)
        self.root.mkdir(mode=DIR_MODE, exist_ok=True)
        write_atomic(path, data)
        return len(data)

    def load(self, name: str) -> dict[str, np.ndarray] | None:
        """The arrays of state ``name`` after checking them, or None when no such state was saved."""
        path = self.path(name)
        try:
            data = read_regular(path)
        except FileNotFoundError:
            return None
        except StoreFileError as e:
            raise StateIntegrityError(path, f"is refused: {e}") from e
        except OSError as e:
            raise StateIntegrityError(path, f"cannot be read ({e.strerror})") from e
        return self._parse(path, data)

    def _parse(self, path: Path, data: bytes) -> dict[str, np.ndarray]:
        try:
            meta = _metadata(data)
            arrays = st_load(data)
        except Exception as e:  # malformed header or JSON; safetensors raises its own error types
            raise StateIntegrityError(path, f"is not a readable safetensors file ({e})") from e
        if meta.get("format") != FORMAT or "sha256" not in meta:
            raise StateIntegrityError(path, f"is not a memkit state file (no {FORMAT!r} header)")
        if content_checksum(arrays) != meta["sha256"]:
            raise StateIntegrityError(path, "failed its checksum")
        return arrays

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name[: -len(SUFFIX)] for p in self.root.iterdir()
                      if p.is_file() and p.name.endswith(SUFFIX) and not p.name.startswith("."))

    def total_bytes(self) -> int:
        return sum(self.path(n).stat().st_size for n in self.names())

    def problems(self) -> list[str]:
        """One line per state file that fails to load (for ``verify``)."""
        out = []
        for name in self.names():
            try:
                self.load(name)
            except StateIntegrityError as e:
                out.append(f"method state {name!r} {e.reason} ({e.path}); remove the file and ingest the "
                           f"documents again to retrain it")
        return out
