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
from storage.database import check_url as check_db_url
from storage.store import Store
from storage.types import AddResult, CollectionInfo, DocumentIn, DocumentRow, Hit, MemoryRow, RecordIn

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
