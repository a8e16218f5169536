"""The one small interface every way of absorbing knowledge implements, and the values it passes around.

Owns: ``Record`` (what a method makes of a document), ``Retrieved`` (what a question got back from the
memory), ``Context`` (what a method combined for one question), ``Answer`` with its ``Source`` list, the
``Method`` protocol, and two optional abilities a method may add: ``StatefulMethod`` (state of its own beyond
per-document records, such as trained weights, which the engine keeps in the store) and ``BatchAnswering``
(answering many combined contexts in batched generation). Knows nothing of SQL, FAISS or the CLI: the engine
moves values between a method and a store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np


@dataclass
class Record:
    """One memory made from a document: a key to find it by and tensors it carries.

    ``kind`` names what it is ("doc", "chunk", later "adapter", "slots"); ``span`` is the character span of the
    document it covers; ``key`` is an L2-normalised float32 vector or None for records never searched.
    """

    kind: str
    key: np.ndarray | None
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    span: tuple[int, int] | None = None
    meta: dict = field(default_factory=dict)


@dataclass
class Retrieved:
    """A memory that a question retrieved, with what the method needs to use it."""

    memory_id: int
    document_id: int
    score: float
    kind: str
    source: str
    span: tuple[int, int] | None
    text: str                                   # the span's text (the whole document when span is None)
    payload: dict[str, np.ndarray] | None = None  # loaded only when the method asks for payloads


@dataclass
class Source:
    """Where an answer came from: a document, the part of it used, and how well it matched."""

    document_id: int
    source: str
    score: float
    kind: str
    span: tuple[int, int] | None = None
    snippet: str = ""

    def to_dict(self) -> dict:
        return {"document_id": self.document_id, "source": self.source, "score": round(float(self.score), 6),
                "kind": self.kind, "span": list(self.span) if self.span else None, "snippet": self.snippet}


@dataclass
class Context:
    """What a method combined for one question: passages for the prompt, sources, and method extras."""

    question: str
    passages: list[str] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class Answer:
    """The answer text, the sources it rests on, and what it cost."""

    question: str
    text: str
    method: str
    sources: list[Source] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"question": self.question, "answer": self.text, "method": self.method,
                "sources": [s.to_dict() for s in self.sources],
                "timings_ms": {k: round(v, 3) for k, v in self.timings.items()}, "info": self.info}


@runtime_checkable
class Method(Protocol):
    """A way of absorbing documents into memory and answering from it."""

    name: str
    needs_payload: bool          # whether combine() needs Retrieved.payload loaded (optional beside it:
                                 # payloads_wanted(scores) -> [bool], which of a question's hits, best first,
                                 # combine() will use; the others' payloads are not read)
    key_dim: int | None          # dimension of the keys it makes (None: it makes none)

    def config_dict(self) -> dict:
        """Its configuration, recorded with the store; the same dict rebuilds the same method."""

    def encode(self, texts: Sequence[str]) -> list[list[Record]]:
        """Memory records for each document text, batched."""

    def query_key(self, question: str) -> np.ndarray | None:
        """The key a question searches with, or None when the method does not search. (Optional beside it:
        ``query_keys(questions) -> list`` (the same keys, computed together: the engine uses it when present),
        ``weigh_queries(keys, frequencies)``, keys ``[q, d]`` reweighted by the store's key statistics,
        ``frequencies() -> (counts [d], n)``; the engine calls it before searching.)"""

    def search_size(self, top_k: int | None) -> int:
        """How many memories to retrieve for a question."""

    def combine(self, question: str, retrieved: list[Retrieved], top_k: int | None = None) -> Context:
        """Aggregate what was retrieved into what the LM will read."""

    def answer(self, context: Context) -> Answer:
        """Let the frozen LM answer with the combined memory applied."""


@runtime_checkable
class StatefulMethod(Protocol):
    """Optional: a method whose memory is also state of its own (e.g. fine-tuned weights), not only records.

    The engine saves ``state_tensors()`` in the store after each batch of documents it ingests and gives what
    the store holds to ``load_state_tensors`` when it is built, so a reopened store answers as before.
    """

    def state_tensors(self) -> dict[str, np.ndarray] | None:
        """The state as named numpy arrays, or None while there is none worth keeping."""

    def load_state_tensors(self, tensors: dict[str, np.ndarray]) -> None:
        """Take back a state ``state_tensors`` returned (refusing, with a ConfigError, one that does not fit)."""


@runtime_checkable
class BatchAnswering(Protocol):
    """Optional: answer many combined contexts at once, generating in batches; the texts equal ``answer``'s."""

    def answer_many(self, contexts: Sequence[Context], batch_size: int = 8) -> list[Answer]:
        """One answer per context, in order."""


def snippet(text: str, limit: int = 160) -> str:
    """A one-line preview of a passage for showing a source."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
