"""The ingest and ask loops: documents -> method -> store, and question -> store -> method -> answer.

Owns: batching documents through ``method.encode`` (each first checked by ``validate_document``, so a bad one
is reported as refused and never reaches the method or the store), duplicate skipping by content hash, stream
positions, turning store hits into ``Retrieved`` values, timing each step, batched answering of many questions, and
keeping a stateful method's own state (``StatefulMethod``) in the store: loaded when the engine is built,
saved after each batch of ingested documents (a crash between a batch's documents and its state loses only
that batch's training, never the documents). Talks to the store only through the
``MemoryStore`` protocol below (``storage.Store`` satisfies it), so it knows nothing of SQL or FAISS.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol, Sequence

import numpy as np

from memkit.errors import InputError
from memkit.methods.base import (
    Answer, BatchAnswering, BatchKeys, ChoosesPayloads, Context, FusesText, HopsAgain, Method, QuestionRead,
    ReadsQuestions, Retrieved, StatefulMethod, WeighsQueries,
)
from memkit.documents import ReadLimits, SourceDocument, validate_document, validate_question


def as_of_time(value: str | None, what: str = "as of") -> str | None:
    """An ``as_of`` time (or another time bound, named ``what`` in the error) as the store keeps timestamps (ISO
    8601 UTC); ``InputError`` when it is not a time."""
    if value is None:
        return None
    from memkit.sources import parse_timestamp

    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise InputError(f"{what}: {str(exc).replace(chr(39) + 'timestamp' + chr(39), 'the time')}") from None


class MemoryStore(Protocol):
    """Every call the engine makes of a store (``storage.Store`` satisfies it; so can an in-memory fake)."""

    def find_by_hashes(self, digests: Sequence[str]) -> dict[str, int]:
        """``{digest: document id}`` of the content hashes the store holds, in one query."""

    def stream_length(self, stream: str) -> int:
        """How many documents the store holds of ``stream`` (the next document's position)."""

    def add_documents(self, items: Sequence[tuple[SourceDocument, list]]) -> list:
        """Write ``(document, records)`` pairs as one batch; per pair a result with ``document_id``,
        ``duplicate`` and ``memory_ids``."""

    def search_many(self, keys: np.ndarray, k: int, *, with_text: bool, as_of: str | None = None) -> list:
        """Per key ``[q, d]`` its ``k`` nearest memories as hits (``memory_id``, ``document_id``, ``score``,
        ``kind``, ``source``, ``span``, ``text``); ``as_of``: only documents timestamped at or before it."""

    def search_text_many(self, texts: Sequence[str], k: int, *, with_text: bool,
                         as_of: str | None = None) -> list:
        """Per text its ``k`` best memories by the database's full-text (BM25) ranking, as ``search_many``'s
        hits."""

    def key_frequencies(self) -> tuple[np.ndarray, int]:
        """Per key dimension how many stored keys are non-zero there, and how many keys there are."""

    def load_payloads(self, memory_ids) -> dict[int, dict[str, np.ndarray]]:
        """Memory id -> its named arrays."""

    def save_state(self, name: str, tensors: dict[str, np.ndarray]) -> None:
        """Keep a method's own state."""

    def load_state(self, name: str) -> dict[str, np.ndarray] | None:
        """The state ``save_state`` kept under ``name``, or None."""


@dataclass(frozen=True)
class Abilities:
    """A method's optional abilities (``memkit.methods.base``), resolved once when the engine is built."""

    read: Callable[[list[str]], list[QuestionRead]]
    """The questions' keys and readings: the method's ``read_questions``, else keys alone."""
    keys: Callable[[list[str]], list]
    """The questions' keys alone (a second hop's sentences need nothing else)."""
    weigh: Callable | None
    fusion: object | None
    wanted: Callable | None
    reads_questions: bool
    stateful: bool
    batch_answers: bool
    hop: object | None = None
    """A ``memkit.hops.HopModel``: the second retrieval hop (None: one hop)."""

    @classmethod
    def of(cls, method: Method) -> "Abilities":
        if isinstance(method, BatchKeys):
            keys = method.query_keys
        else:
            keys = lambda qs: [method.query_key(q) for q in qs]                   # noqa: E731
        if isinstance(method, ReadsQuestions):
            read = method.read_questions
        else:
            read = lambda qs: [QuestionRead(k) for k in keys(qs)]                 # noqa: E731
        return cls(read=read, keys=keys, weigh=method.weigh_queries if isinstance(method, WeighsQueries) else None,
                   fusion=method.fusion if isinstance(method, FusesText) else None,
                   wanted=method.payloads_wanted if isinstance(method, ChoosesPayloads) else None,
                   reads_questions=isinstance(method, ReadsQuestions),
                   stateful=isinstance(method, StatefulMethod),
                   batch_answers=isinstance(method, BatchAnswering),
                   hop=method.hop if isinstance(method, HopsAgain) else None)


@dataclass
class IngestReport:
    """What an ingest did: documents added, duplicates skipped, inputs refused (with reasons)."""

    added: list[int] = field(default_factory=list)
    duplicates: int = 0
    memories: int = 0
    failed: list[InputError] = field(default_factory=list)
    seconds: float = 0.0

    def merge(self, other: "IngestReport") -> None:
        """Add ``other``'s counts to this report's (its time not included)."""
        self.added += other.added
        self.duplicates += other.duplicates
        self.memories += other.memories
        self.failed += other.failed

    def to_dict(self) -> dict:
        return {"added": len(self.added), "document_ids": self.added, "duplicates": self.duplicates,
                "memories": self.memories, "failed": [str(e) for e in self.failed],
                "seconds": round(self.seconds, 3)}


FUSE_DEPTH = 4
"""How many times deeper than asked each list of a fused search goes."""

ProgressFn = Callable[[str, "SourceDocument | InputError"], None]


class Engine:
    """A frozen LM, a method and a store, wired together."""

    def __init__(self, lm, method: Method, store: MemoryStore, *, batch_size: int = 8, write_batch: int = 64):
        self.lm = lm
        self.method = method
        self.store = store
        self.batch_size = batch_size
        self.write_batch = max(write_batch, batch_size)
        """Documents written to the store together (one transaction, one segment file, one index update)."""
        self.abilities = Abilities.of(method)
        self._load_state()

    # ---- method state ---------------------------------------------------------------------------------
    @property
    def stateful(self) -> bool:
        return self.abilities.stateful

    def _load_state(self) -> None:
        if self.stateful:
            tensors = self.store.load_state(self.method.name)
            if tensors is not None:
                self.method.load_state_tensors(tensors)

    def _save_state(self) -> None:
        if self.stateful:
            tensors = self.method.state_tensors()
            if tensors is not None:
                self.store.save_state(self.method.name, tensors)

    # ---- ingest ---------------------------------------------------------------------------------------
    def ingest(self, items: Iterable[SourceDocument | InputError], progress: ProgressFn | None = None, *,
               limits: ReadLimits | None = None) -> IngestReport:
        """Absorb every document of ``items``; refused inputs are counted and reported, never fatal.

        Every item that is not an InputError goes through ``validate_document`` (within ``limits``, the default
        ``ReadLimits()`` when None) first: one that fails is reported as refused, named by its source or else as
        ``item N`` (counted from 1), and the rest of its batch is kept.
        """
        start = time.perf_counter()
        ingestion = self.ingestion(progress, limits=limits)
        report = ingestion.add(items)
        report.merge(ingestion.close())
        report.seconds = time.perf_counter() - start
        return report

    def ingestion(self, progress: ProgressFn | None = None, *, limits: ReadLimits | None = None) -> "Ingestion":
        """One ingest fed in several calls (e.g. a server job's chunks, with questions answered between them):
        documents are written ``write_batch`` at a time across the calls, and ``close`` writes the rest."""
        return Ingestion(self, progress, limits)

    # ---- ask ------------------------------------------------------------------------------------------
    def retrieve(self, question: str, n: int, *, as_of: str | None = None) -> list[Retrieved]:
        """The ``n`` memories whose keys best match the question, with their text (and payload if needed); with
        ``as_of`` (normalised ISO 8601 UTC), only of documents timestamped at or before it."""
        return self.retrieve_many([question], n, as_of=as_of)[0]

    def retrieve_many(self, questions: Sequence[str], n: int, *, as_of: str | None = None) -> list[list[Retrieved]]:
        """``retrieve`` for each question (the same memories), with one search (hits and their documents' texts
        in one query) and one read of the payloads for all of them."""
        return self._search(questions, n, as_of)[0]

    def _search(self, questions: Sequence[str], n: int,
                as_of: str | None) -> tuple[list[list[Retrieved]], list[QuestionRead | None]]:
        """``retrieve_many``'s memories and each question's reading (for a method that reads questions)."""
        reads = self.abilities.read(list(questions))
        asked = [i for i, r in enumerate(reads) if r.key is not None]
        out: list[list[Retrieved]] = [[] for _ in questions]
        kept: list[QuestionRead | None] = list(reads) if self.abilities.reads_questions else [None] * len(questions)
        if n <= 0 or not asked:
            return out, kept
        queries = np.stack([np.asarray(reads[i].key, dtype=np.float32) for i in asked])
        if self.abilities.weigh is not None:
            queries = self.abilities.weigh(queries, self.store.key_frequencies)
        fusion = self.abilities.fusion
        if fusion is None:
            hits = self.store.search_many(queries, n, with_text=True, as_of=as_of)
        else:
            hits = self._fused(fusion, [questions[i] for i in asked], queries, n, as_of)
        hops = [0] * len(hits)
        if self.abilities.hop is not None:
            hits, hops = self._second_hop(queries, hits, n, as_of)
        payloads = {}
        if self.method.needs_payload:
            # a method may say which hits it will use, from their scores, so the rest are never read
            wanted = self.abilities.wanted
            use = [wanted([h.score for h in row]) if wanted else [True] * len(row) for row in hits]
            payloads = self.store.load_payloads({h.memory_id for row, keep in zip(hits, use)
                                                 for h, k in zip(row, keep) if k})
        for i, row, second in zip(asked, hits, hops):
            for j, hit in enumerate(row):
                span = tuple(hit.span) if hit.span else None
                out[i].append(Retrieved(
                    memory_id=hit.memory_id, document_id=hit.document_id, score=float(hit.score), kind=hit.kind,
                    source=hit.source, span=span, text=hit.text[span[0]:span[1]] if span else hit.text,
                    payload=payloads.get(hit.memory_id), hop=2 if second and j == len(row) - 1 else 1))
        return out, kept

    def _second_hop(self, queries: np.ndarray, hits: list[list], n: int,
                    as_of: str | None) -> tuple[list[list], list[int]]:
        """The hits with each gated question's second-hop hit appended (``memkit.hops``): the sentences of its
        best hit's document, keyed as questions are, plus the hop model's prior, are searched; the best hit of a
        document the first hop did not find, over all sentences, joins with the first hit's score (so that a
        merge by score weighs the two documents alike). Per question whether it got one."""
        from memkit.hops import sentences

        hop = self.abilities.hop
        opens = hop.fires(queries)
        plan = [(i, sentences(row[0].text)) for i, row in enumerate(hits) if opens[i] and row]
        plan = [(i, ss) for i, ss in plan if ss]
        added = [0] * len(hits)
        if not plan:
            return hits, added
        flat = [s for _, ss in plan for s in ss]
        keys = np.stack([np.asarray(k, dtype=np.float32) for k in self.abilities.keys(flat)])
        if self.abilities.weigh is not None:
            keys = self.abilities.weigh(keys, self.store.key_frequencies)
        ends = np.cumsum([len(ss) for _, ss in plan])
        spans = [(i, end - len(ss), end) for (i, ss), end in zip(plan, ends)]
        asked = np.concatenate([hop.queries(keys[a:b], queries[i]) for i, a, b in spans])
        rows = self.store.search_many(asked, n + 1, with_text=True, as_of=as_of)
        out = [list(row) for row in hits]
        for i, a, b in spans:
            best = hop.bridge(rows[a:b], {h.document_id for h in hits[i]}, document=lambda h: h.document_id,
                              score=lambda h: h.score)
            if best:
                out[i].append(dataclasses.replace(best[0], score=hits[i][0].score))
                added[i] = 1
        return out, added

    def _fused(self, fusion, questions: list[str], queries: np.ndarray, n: int, as_of: str | None) -> list[list]:
        """The ``n`` best hits per question from the nearest keys and the database's BM25 over the memories'
        words, fused as ``fusion`` (a ``memkit.fusion.FusionConfig``) says, each list ``FUSE_DEPTH`` times deeper
        than asked so that fusion has candidates to promote. A hit's score becomes its fused score over the best
        a memory can get (1: first in both lists; in ``lexical`` mode, the BM25 score over the best's)."""
        from memkit.fusion import fuse

        depth = max(n, FUSE_DEPTH * n)
        dense = ([[] for _ in questions] if fusion.mode == "lexical"
                 else self.store.search_many(queries, depth, with_text=True, as_of=as_of))
        lexical = self.store.search_text_many(questions, depth, with_text=True, as_of=as_of)
        best = {"rrf": 1.0 / (fusion.rrf_k + 1), "score": 1.0}.get(fusion.mode)
        out = []
        for d_row, l_row in zip(dense, lexical):
            by_id = {h.memory_id: h for h in [*l_row, *d_row]}
            ranked = fuse([(h.memory_id, h.score) for h in d_row], [(h.memory_id, h.score) for h in l_row], fusion,
                          limit=n)
            top = best if best is not None else max([s for _, s in ranked], default=1.0) or 1.0
            out.append([dataclasses.replace(by_id[i], score=float(s) / top) for i, s in ranked])
        return out

    def ask(self, question: str, *, top_k: int | None = None, as_of: str | None = None) -> Answer:
        """Answer one question from what the store holds, with sources and timings; with ``as_of`` (a timestamp
        as a JSONL document's, ``memkit.sources.parse_timestamp``), only from documents timestamped at or before
        it."""
        t0 = time.perf_counter()
        context = self._context(question, top_k, None, as_of=as_of_time(as_of))
        answer = self.method.answer(context)
        answer.timings["total"] = (time.perf_counter() - t0) * 1000
        return answer

    def ask_many(self, questions: Sequence[str], *, top_k: int | None = None, batch_size: int = 8,
                 retrieved: Sequence[list[Retrieved]] | None = None, as_of: str | None = None) -> list[Answer]:
        """Answer many questions: retrieve and combine for each, then generate in batches of ``batch_size``.

        The texts equal ``ask``'s one by one. Each answer's ``total`` timing is its own retrieve and combine
        time plus an equal share of the whole answering call (generation and whatever a method does before it,
        e.g. normalising adapter states). ``retrieved`` (one list per question) gives the memories
        to use instead of searching the store, e.g. documents known to hold the answer.
        """
        if retrieved is not None and len(retrieved) != len(questions):
            raise InputError(f"{len(retrieved)} lists of memories given for {len(questions)} questions")
        for q in questions:
            validate_question(q)
        share = 0.0
        reads: list[QuestionRead | None] = [None] * len(questions)
        if retrieved is None:
            t0 = time.perf_counter()
            retrieved, reads = self._search(questions, self.method.search_size(top_k), as_of_time(as_of))
            share = (time.perf_counter() - t0) * 1000 / max(1, len(questions))
        contexts = [self._context(q, top_k, list(retrieved[i]), reads[i], retrieve_ms=share)
                    for i, q in enumerate(questions)]
        t0 = time.perf_counter()
        if self.abilities.batch_answers:
            answers = self.method.answer_many(contexts, batch_size=batch_size)
        else:
            answers = [self.method.answer(c) for c in contexts]
        share = (time.perf_counter() - t0) * 1000 / max(1, len(answers))
        for answer in answers:
            answer.timings["total"] = answer.timings.get("retrieve", 0.0) + answer.timings.get("combine", 0.0) + share
        return answers

    def _context(self, question: str, top_k: int | None, given: list[Retrieved] | None,
                 read: QuestionRead | None = None, retrieve_ms: float = 0.0, as_of: str | None = None) -> Context:
        """The method's context for ``question`` from ``given`` memories (searched here when None) and its
        reading of the question; ``retrieve_ms`` is the time already spent finding ``given``, if this engine
        found them."""
        validate_question(question)
        t0 = time.perf_counter()
        if given is None:
            found, reads = self._search([question], self.method.search_size(top_k), as_of)
            given, read = found[0], reads[0]
        t1 = time.perf_counter()
        if self.abilities.reads_questions:
            context = self.method.combine(question, given, top_k, read=read)
        else:
            context = self.method.combine(question, given, top_k)
        t2 = time.perf_counter()
        context.timings.update({"retrieve": (t1 - t0) * 1000 + retrieve_ms, "combine": (t2 - t1) * 1000})
        return context


class Ingestion:
    """An ingest fed in several ``add`` calls and finished by ``close`` (``Engine.ingestion``).

    Documents are checked, deduplicated (against the store and each other) and encoded ``batch_size`` at a time
    as they come, and written to the store ``write_batch`` at a time, across calls: a write batch is one
    transaction, one segment file and one index update, so feeding documents a few at a time costs no more
    writes than one call. Each call's report counts what it refused, skipped and wrote; documents encoded and
    not written yet are written by a later call or by ``close``. Stream positions follow the store's and those
    given earlier in the same ingestion.
    """

    def __init__(self, engine: Engine, progress: ProgressFn | None, limits: ReadLimits | None):
        self.engine = engine
        self.limits = limits
        self.notify = progress or (lambda event, item: None)
        self.positions: dict[str, int] = {}
        self.pending: list[SourceDocument] = []
        self.encoded: list[tuple[SourceDocument, list]] = []
        self.seen: set[str] = set()
        self.number = 0

    def add(self, items: Iterable[SourceDocument | InputError]) -> IngestReport:
        """Take ``items`` (see ``Engine.ingest``); returns what this call refused, skipped and wrote."""
        start = time.perf_counter()
        report = IngestReport()
        for item in items:
            self.number += 1
            if not isinstance(item, InputError):
                try:
                    item = validate_document(item, self.limits)
                except InputError as exc:
                    item = exc if exc.source is not None else InputError(exc.reason, source=f"item {self.number}")
            if isinstance(item, InputError):
                report.failed.append(item)
                self.notify("failed", item)
                continue
            digest = item.content_hash
            if digest in self.seen:
                report.duplicates += 1
                self.notify("duplicate", item)
                continue
            self.seen.add(digest)
            self.pending.append(item)
            if len(self.pending) >= self.engine.batch_size:
                self._encode(report)
                if len(self.encoded) >= self.engine.write_batch:
                    self._write(report)
        report.seconds = time.perf_counter() - start
        return report

    def close(self) -> IngestReport:
        """Encode and write what is left; returns what that wrote."""
        start = time.perf_counter()
        report = IngestReport()
        self._encode(report)
        self._write(report)
        report.seconds = time.perf_counter() - start
        return report

    def _encode(self, report: IngestReport) -> None:
        """Encodes the pending documents the store does not hold yet (asked in one query), giving each document of
        a stream the next position."""
        if not self.pending:
            return
        store = self.engine.store
        digests = [doc.content_hash for doc in self.pending]
        stored = store.find_by_hashes(digests)
        fresh = []
        for doc, digest in zip(self.pending, digests):
            if digest in stored:
                report.duplicates += 1
                self.notify("duplicate", doc)
                continue
            if doc.stream is not None:
                if doc.stream not in self.positions:
                    self.positions[doc.stream] = store.stream_length(doc.stream)
                doc.position = self.positions[doc.stream]
                self.positions[doc.stream] += 1
            fresh.append(doc)
        self.pending.clear()
        if fresh:
            self.encoded.extend(zip(fresh, self.engine.method.encode([doc.text for doc in fresh])))

    def _write(self, report: IngestReport) -> None:
        """Writes the encoded documents to the store in one batch, then saves a stateful method's state."""
        if not self.encoded:
            return
        results = self.engine.store.add_documents(self.encoded)
        for (doc, _), result in zip(self.encoded, results):
            if result.duplicate:
                report.duplicates += 1
                self.notify("duplicate", doc)
            else:
                report.added.append(result.document_id)
                report.memories += len(result.memory_ids)
                self.notify("added", doc)
        self.encoded.clear()
        self.engine._save_state()
