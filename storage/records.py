"""Checking a document and its records before anything is written.

Owns: ``prepare_records``, which validates what ``Store.add_document`` is given (text, kinds, spans, keys,
payload arrays) and stacks the keys into one float32 matrix, so that a bad call fails before the first blob is
written. Knows nothing of SQL, FAISS files or models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from storage.errors import DimensionMismatchError
from storage.types import DocumentIn, RecordIn


@dataclass(frozen=True)
class PreparedRecords:
    keys: np.ndarray
    """[n_keyed, dim] float32, C-contiguous: the keys of the records that have one, in record order."""
    key_rows: tuple[int, ...]
    """Positions in the record list of the records that have a key."""
    dim: int | None
    """The key dimension (the collection's, or the keys' when the collection has none yet); None if unknown."""


def prepare_records(doc: DocumentIn, records: list[RecordIn], key_dim: int | None) -> PreparedRecords:
    """Validates ``doc`` and ``records`` against a collection whose keys have ``key_dim`` entries (or None)."""
    if not isinstance(doc.text, str):
        raise TypeError(f"document text must be str, got {type(doc.text).__name__}")
    if not isinstance(doc.source, str) or not doc.source:
        raise ValueError("a document needs a non-empty source string")
    keys: list[np.ndarray] = []
    rows: list[int] = []
    dim = key_dim
    for i, record in enumerate(records):
        if not isinstance(record.kind, str) or not record.kind:
            raise ValueError(f"record {i} of {doc.source}: kind must be a non-empty string")
        if record.span is not None:
            start, end = record.span
            if not 0 <= start <= end <= len(doc.text):
                raise ValueError(
                    f"record {i} of {doc.source}: span {record.span} is outside the text (length {len(doc.text)})"
                )
        for name, array in record.tensors.items():
            if not isinstance(name, str) or not isinstance(array, np.ndarray):
                raise TypeError(f"record {i} of {doc.source}: tensors must map str to numpy arrays ({name!r})")
        if record.key is None:
            continue
        key = np.asarray(record.key, dtype=np.float32)
        if key.ndim != 1 or key.shape[0] == 0:
            raise ValueError(f"record {i} of {doc.source}: key must be a non-empty 1-D vector, got {list(key.shape)}")
        if dim is None:
            dim = key.shape[0]
        elif key.shape[0] != dim:
            raise DimensionMismatchError(dim, key.shape[0], what=f"key of record {i} of {doc.source}")
        if not np.isfinite(key).all():
            raise ValueError(f"record {i} of {doc.source}: key has NaN or infinite entries")
        keys.append(key)
        rows.append(i)
    matrix = np.ascontiguousarray(np.stack(keys)) if keys else np.empty((0, dim or 0), np.float32)
    return PreparedRecords(keys=matrix, key_rows=tuple(rows), dim=dim)
