"""The one small interface every way of absorbing knowledge implements, and the typed values it passes around.

Owns: ``Record`` (what a method makes of a document), ``Retrieved`` (what a question got back from the
memory), ``Context`` (what a method combined for one question, with its own typed ``plan`` for answering),
``Answer`` with its ``Source`` list, ``Usage`` and ``AnswerNotes``, the ``Method`` protocol, and the optional
abilities a method may add, each a small protocol the engine resolves once when it is built: ``BatchKeys``
(the keys of many questions at once), ``WeighsQueries`` (query keys reweighted by the store's key statistics),
``FusesText`` (nearest keys fused with the database's full-text search), ``ChoosesPayloads`` (which hits'
payloads to read), ``StatefulMethod`` (state of its own beyond per-document records, such as trained weights,
which the engine keeps in the store) and ``BatchAnswering`` (answering many combined contexts in batched
generation). A context's ``plan`` is read only by the method that made it. Knows nothing of SQL, FAISS or the
CLI: the engine moves values between a method and a store.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

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
    hop: int = 1                                # 2: found by a second search from the first hop's document


def best_first(retrieved: list[Retrieved], limit: int) -> list[Retrieved]:
    """The ``limit`` best memories the question's own search found, and those a second hop added on top of
    them (a second hop's memory comes in addition to the ``limit``), best first; equal scores keep their order
    (a second hop's memory, with its first document's score, right after it)."""
    first = sorted((r for r in retrieved if r.hop == 1), key=lambda r: -r.score)[:limit]
    return sorted(first + [r for r in retrieved if r.hop != 1], key=lambda r: -r.score)


@dataclass
class Source:
    """Where an answer came from: a document, the part of it used, how well it matched, and (for a method that
    merges its memories by weight) the weight it had in the merge."""

    document_id: int
    source: str
    score: float
    kind: str
    span: tuple[int, int] | None = None
    snippet: str = ""
    weight: float | None = None
    hop: int = 1
    """Which search found it: 1, the question's own; 2, a second search from the first one's document."""

    def to_dict(self) -> dict:
        return {"document_id": self.document_id, "source": self.source, "score": round(float(self.score), 6),
                "kind": self.kind, "span": list(self.span) if self.span else None, "snippet": self.snippet,
                "weight": None if self.weight is None else round(float(self.weight), 6), "hop": self.hop}


@dataclass
class Context:
    """What a method combined for one question: passages for the prompt, sources, the time each step took, and
    the method's own ``plan`` for answering (e.g. the adapter's merged state, the slots' memories): a typed value
    that only the method that made it reads."""

    question: str
    passages: list[str] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    truncated: bool = False
    """Whether passages were cut to fit the model's window."""
    timings: dict[str, float] = field(default_factory=dict)
    """Milliseconds per step so far (retrieve, combine, the method's own steps)."""
    plan: Any = None


@dataclass
class Usage:
    """What answering read and wrote, in tokens."""

    prompt_tokens: int = 0
    """Tokens of the prompt the LM read (its lead tokens such as BOS not counted)."""
    generated_tokens: int = 0
    """Tokens the LM generated (a stop string's included, EOS not)."""
    read_tokens: int | None = None
    """Tokens a slot model read for the question (its key and aggregation); None for a method without one."""


@dataclass
class AnswerNotes:
    """What a method says about how it answered; a field is None when the method has nothing to say of it."""

    truncated: bool = False
    """The passages were cut to fit the model's window."""
    merged_documents: int | None = None
    """How many retrieved documents' adapters were merged (adapter, hybrid)."""
    memories: int | None = None
    """How many retrieved memories were aggregated (slots, hybrid)."""
    documents_trained: int | None = None
    """Documents the method's own weights were trained on (finetune)."""
    lora_steps: int | None = None
    """Optimizer steps of the method's own weights (finetune)."""
    sources_note: str | None = None
    """Why an answer has no sources, when the method never has any (finetune)."""


@dataclass
class Answer:
    """The answer text, the sources it rests on, and what it cost."""

    question: str
    text: str
    method: str
    sources: list[Source] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    notes: AnswerNotes = field(default_factory=AnswerNotes)

    def info(self) -> dict:
        """Usage and notes as one flat dict, without what is None (the ``info`` of the JSON answer)."""
        return {k: v for k, v in {**asdict(self.usage), **asdict(self.notes)}.items() if v is not None}

    def to_dict(self) -> dict:
        return {"question": self.question, "answer": self.text, "method": self.method,
                "sources": [s.to_dict() for s in self.sources],
                "timings_ms": {k: round(v, 3) for k, v in self.timings.items()}, "info": self.info()}


@runtime_checkable
class Method(Protocol):
    """A way of absorbing documents into memory and answering from it."""

    name: str
    needs_payload: bool          # whether combine() needs Retrieved.payload loaded (see ChoosesPayloads)
    key_dim: int | None          # dimension of the keys it makes (None: it makes none)

    def config_dict(self) -> dict:
        """Its configuration, recorded with the store; the same dict rebuilds the same method."""

    def encode(self, texts: Sequence[str]) -> list[list[Record]]:
        """Memory records for each document text, batched."""

    def query_key(self, question: str) -> np.ndarray | None:
        """The key a question searches with, or None when the method does not search (see ``BatchKeys``)."""

    def search_size(self, top_k: int | None) -> int:
        """How many memories to retrieve for a question."""

    def combine(self, question: str, retrieved: list[Retrieved], top_k: int | None = None) -> Context:
        """Aggregate what was retrieved into what the LM will read."""

    def answer(self, context: Context) -> Answer:
        """Let the frozen LM answer with the combined memory applied."""


@runtime_checkable
class BatchKeys(Protocol):
    """Optional: the keys of many questions computed together (the engine then never calls ``query_key``)."""

    def query_keys(self, questions: Sequence[str]) -> list[np.ndarray | None]:
        """``query_key`` of each question, in order."""


@dataclass
class QuestionRead:
    """A question as a method read it: the key it searches with, and what the method keeps of the reading for
    answering (given back to its ``combine``; only that method reads it)."""

    key: np.ndarray | None
    state: Any = None


@runtime_checkable
class ReadsQuestions(Protocol):
    """Optional: a method that reads each question once, for its key and for answering (e.g. the slot model's
    vectors of the question): the engine searches with the keys ``read_questions`` gives and hands each
    question's reading back to ``combine(..., read=)``."""

    def read_questions(self, questions: Sequence[str]) -> list[QuestionRead]:
        """One reading per question, in order."""

    def combine(self, question: str, retrieved: list["Retrieved"], top_k: int | None = None, *,
                read: QuestionRead | None = None) -> "Context":
        """``Method.combine`` with the question's reading (None: the method reads the question itself)."""


@runtime_checkable
class WeighsQueries(Protocol):
    """Optional: query keys reweighted by the store's key statistics before searching (e.g. lexical keys by IDF)."""

    def weigh_queries(self, keys: np.ndarray, frequencies: Callable[[], tuple[np.ndarray, int]]) -> np.ndarray:
        """``keys [q, d]`` reweighted by ``frequencies()`` (per-dimension counts ``[d]`` over ``n`` keys; called
        only when the weighing needs them)."""


@runtime_checkable
class FusesText(Protocol):
    """Optional: how the nearest keys are fused with the database's full-text (BM25) search of the memories'
    words; a ``memkit.fusion.FusionConfig``, or None for nearest keys alone."""

    fusion: Any


@runtime_checkable
class HopsAgain(Protocol):
    """Optional: a second retrieval hop. ``hop`` is a ``memkit.hops.HopModel`` in the method's key space (or
    None: one hop); questions its gate opens for search again from the sentences of their first hop's best
    document, keyed as the method keys questions."""

    hop: Any


@runtime_checkable
class ChoosesPayloads(Protocol):
    """Optional: which of a question's hits (best first) ``combine`` will use, from their scores, so the others'
    payloads are never read."""

    def payloads_wanted(self, scores: Sequence[float]) -> list[bool]:
        """One flag per score."""


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
