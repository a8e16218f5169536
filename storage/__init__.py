"""memkit's store: documents, memory records, payload blobs and a vector index in one directory.

Owns: everything on disk (SQL through SQLAlchemy, a FAISS index, safetensors blobs, the writer lock). The rest
of memkit uses ``Store`` and the plain values in ``storage.types``. Knows nothing of models, tokenizers, torch or
the ``memkit`` package: keys and payloads arrive as numpy arrays.
"""

from __future__ import annotations

from storage.errors import (
    CollectionNotFoundError,
    CorruptBlobError,
    CorruptStateError,
    DimensionMismatchError,
    DocumentNotFoundError,
    MemoryNotFoundError,
    ModelMismatchError,
    NotAStoreError,
    StoreError,
    StoreExistsError,
    StoreFormatError,
    StoreLockedError,
)
from storage.types import AddResult, CollectionInfo, DocumentIn, DocumentRow, Hit, MemoryRow, RecordIn

_LAZY = {"Store": ("storage.store", "Store"), "check_db_url": ("storage.database", "check_url")}
"""Names whose modules import SQLAlchemy, numpy and FAISS (most of a second): loaded on first use, so that
importing ``storage.errors`` (as the command line does for ``--help``) stays cheap."""


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'storage' has no attribute {name!r}")

__all__ = [
    "AddResult",
    "check_db_url",
    "CollectionInfo",
    "CollectionNotFoundError",
    "CorruptBlobError",
    "CorruptStateError",
    "DimensionMismatchError",
    "DocumentIn",
    "DocumentNotFoundError",
    "DocumentRow",
    "Hit",
    "MemoryNotFoundError",
    "MemoryRow",
    "ModelMismatchError",
    "NotAStoreError",
    "RecordIn",
    "Store",
    "StoreError",
    "StoreExistsError",
    "StoreFormatError",
    "StoreLockedError",
]
