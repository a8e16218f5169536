"""Plain values that cross the store's boundary.

Owns: what callers hand to the store (``DocumentIn``, ``RecordIn``) and what it hands back (rows, hits,
results, collection info). These are dataclasses of str/int/dict/numpy values only: no SQL objects, no torch
tensors, nothing that ties a caller to SQLAlchemy or FAISS. Knows nothing of models or of how records are made.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np


def content_hash(text: str) -> str:
    """The SHA-256 hex digest of ``text`` encoded as UTF-8; the store's identity of a document."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class DocumentIn:
    """A document to add: its text and where it came from."""

    text: str
    source: str
    """Where the text came from (a path, a URL, ``stdin``, a stream name and line)."""
    timestamp: str | None = None
    """When the document was written or observed, ISO 8601 as the source gave it."""
    stream: str | None = None
    """Name of the stream the document belongs to (JSONL streams), or None for loose documents."""
    position: int | None = None
    """Position of the document in its stream."""
    external_id: str | None = None
    """The source's own id for the document, if it has one."""
    meta: dict = field(default_factory=dict)
    """Anything else JSON-serialisable the caller wants kept."""

    @property
    def content_hash(self) -> str:
        return content_hash(self.text)


@dataclass
class RecordIn:
    """One memory record of a document: an optional search key and named payload tensors."""

    kind: str
    """What the record is (``chunk``, ``adapter``, ``slots``...); searches can filter on it."""
    key: np.ndarray | None
    """1-D float32 search key, L2-normalised by the caller; None for records that are never searched."""
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    """Payload arrays saved as one safetensors blob; empty means the record has no blob."""
    span: tuple[int, int] | None = None
    """Character span ``[start, end)`` of the record in the document text."""
    meta: dict = field(default_factory=dict)


@dataclass
class DocumentRow:
    """A stored document."""

    id: int
    collection: str
    source: str
    content_hash: str
    text: str
    timestamp: str | None
    stream: str | None
    position: int | None
    external_id: str | None
    status: str
    created_at: str
    """When the store added it, ISO 8601 UTC."""
    n_memories: int
    meta: dict


@dataclass
class MemoryRow:
    """A stored memory record (without its payload; ``Store.load_payload`` reads that)."""

    id: int
    document_id: int
    kind: str
    blob_path: str | None
    """Path of the payload file relative to the store directory, or None when the record has no payload."""
    shapes: dict[str, list[int]]
    dtypes: dict[str, str]
    nbytes: int
    """Size of the payload file in bytes (0 without a payload)."""
    checksum: str | None
    """SHA-256 hex digest of the payload file's bytes."""
    span: tuple[int, int] | None
    meta: dict


@dataclass
class Hit:
    """One search result, best first in a result list."""

    memory_id: int
    document_id: int
    score: float
    """Inner product of the query and the memory's key (cosine for normalised keys)."""
    kind: str
    span: tuple[int, int] | None
    meta: dict
    source: str
    """The source string of the memory's document."""
    text: str | None = None
    """The document's whole text, when the search was asked for it (``with_text``)."""


@dataclass
class AddResult:
    """What ``Store.add_document`` did."""

    document_id: int
    duplicate: bool
    """True when a document with the same text was already stored; nothing was written."""
    memory_ids: list[int]


@dataclass
class CollectionInfo:
    """What a collection was built with: the model, the method and its key size."""

    id: int
    name: str
    model_id: str
    model_revision: str | None
    model_fingerprint: str
    method: str
    method_config: dict
    key_dim: int | None
    """Length of every key in the collection; None until the first key is added."""
    created_at: str


@dataclass
class HealthReport:
    """What ``Store.verify`` found."""

    problems: list[str] = field(default_factory=list)
    """Damage or disagreement, one line each, naming what it touches and the command that repairs it."""
    notes: list[str] = field(default_factory=list)
    """States that are normal and mend themselves (an index file that a writer has not saved yet, or that
    a crash left behind; checks left out while another process writes), one line each."""
    writer_pid: int | None = None
    """The pid of another process that held the writer lock during the check (0: held, pid unknown)."""

    @property
    def healthy(self) -> bool:
        return not self.problems
