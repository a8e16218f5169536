"""An in-memory store built only from the engine's ``MemoryStore`` protocol (``memkit.engine``): what a store must
do for the engine, and nothing of SQL, FAISS or files. Brute-force inner-product search (exact), a plain
word-overlap ranking for the full-text search, and ``as_of`` on documents' timestamps."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Hit:
    memory_id: int
    document_id: int
    score: float
    kind: str
    source: str
    span: tuple[int, int] | None
    text: str


@dataclass
class Added:
    document_id: int
    duplicate: bool
    memory_ids: list[int] = field(default_factory=list)


@dataclass
class _Memory:
    id: int
    document_id: int
    kind: str
    key: np.ndarray | None
    tensors: dict
    span: tuple[int, int] | None


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


class MemStore:
    """Every method is one of ``MemoryStore``'s (a test checks that there is no other)."""

    def __init__(self, key_dim: int | None):
        self._key_dim = key_dim
        self._docs: dict[int, object] = {}
        self._hashes: dict[str, int] = {}
        self._memories: dict[int, _Memory] = {}
        self._states: dict[str, dict] = {}

    def find_by_hashes(self, digests):
        return {d: self._hashes[d] for d in digests if d in self._hashes}

    def stream_length(self, stream):
        return sum(1 for d in self._docs.values() if d.stream == stream)

    def add_documents(self, items):
        out = []
        for doc, records in items:
            if doc.content_hash in self._hashes:
                out.append(Added(self._hashes[doc.content_hash], True))
                continue
            doc_id = len(self._docs) + 1
            self._docs[doc_id] = doc
            self._hashes[doc.content_hash] = doc_id
            ids = []
            for r in records:
                mid = len(self._memories) + 1
                key = None if r.key is None else np.asarray(r.key, dtype=np.float32)
                self._memories[mid] = _Memory(mid, doc_id, r.kind, key, dict(r.tensors), r.span)
                ids.append(mid)
            out.append(Added(doc_id, False, ids))
        return out

    def _visible(self, as_of):
        for m in self._memories.values():
            stamp = self._docs[m.document_id].timestamp
            if as_of is None or (stamp is not None and stamp <= as_of):
                yield m

    def _hit(self, m: _Memory, score: float, with_text: bool) -> Hit:
        doc = self._docs[m.document_id]
        return Hit(m.id, m.document_id, float(score), m.kind, doc.source, m.span, doc.text if with_text else "")

    def search_many(self, keys, k, *, with_text, as_of=None):
        out = []
        for q in np.asarray(keys, dtype=np.float32):
            scored = [(float(m.key @ q), m) for m in self._visible(as_of) if m.key is not None]
            scored.sort(key=lambda x: (-x[0], x[1].id))
            out.append([self._hit(m, s, with_text) for s, m in scored[:k]])
        return out

    def search_text_many(self, texts, k, *, with_text, as_of=None):
        out = []
        for text in texts:
            asked = _words(text)
            scored = []
            for m in self._visible(as_of):
                doc = self._docs[m.document_id].text
                body = doc[m.span[0]:m.span[1]] if m.span else doc
                overlap = len(asked & _words(body))
                if overlap:
                    scored.append((float(overlap), m))
            scored.sort(key=lambda x: (-x[0], x[1].id))
            out.append([self._hit(m, s, with_text) for s, m in scored[:k]])
        return out

    def key_frequencies(self):
        keys = [m.key for m in self._memories.values() if m.key is not None]
        if not keys:
            return np.zeros(self._key_dim or 0, dtype=np.int64), 0
        return (np.stack(keys) != 0).sum(axis=0), len(keys)

    def load_payloads(self, memory_ids):
        return {i: dict(self._memories[i].tensors) for i in memory_ids}

    def save_state(self, name, tensors):
        self._states[name] = {k: np.array(v) for k, v in tensors.items()}

    def load_state(self, name):
        return self._states.get(name)
