"""The one shape every benchmark takes: documents with positions in a stream, and questions about them.

Owns: ``bench_document`` (a benchmark's documents are ``memkit.documents.SourceDocument``s, their benchmark id the
``external_id``), ``BenchQuestion`` and ``Benchmark``. Every dataset loader (the synthetic world, SQuAD,
StreamingQA, ArchivalQA, MSC, MetaICL, memkit's English set) produces a ``Benchmark``; every protocol and method
consumes one. Knows nothing of models or storage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from memkit.documents import SourceDocument


def bench_document(id: str, text: str, *, timestamp: str | None = None, source: str | None = None,
                   meta: dict | None = None) -> SourceDocument:
    """A benchmark's document: memkit's one document type (``SourceDocument``) whose ``external_id`` is the
    benchmark's document id (the one questions cite) and whose source is ``source``, or the id when the dataset
    names none."""
    return SourceDocument(text=text, source=source or id, timestamp=timestamp, external_id=id, meta=dict(meta or {}))


@dataclass
class BenchQuestion:
    id: str
    question: str
    answers: list[str]                       # every accepted gold answer; EM/F1 take the best
    doc_ids: list[str]                       # the documents that hold the answer (gold evidence)
    type: str = "single"                     # question type, for per-type scores
    timestamp: str | None = None             # when it is asked (as-of questions)
    meta: dict = field(default_factory=dict)


@dataclass
class Benchmark:
    name: str
    documents: list[SourceDocument]
    questions: list[BenchQuestion]
    meta: dict = field(default_factory=dict)

    def document(self, doc_id: str) -> SourceDocument:
        if not hasattr(self, "_by_id"):
            self._by_id = {d.external_id: d for d in self.documents}
        return self._by_id[doc_id]

    def validate(self) -> None:
        """Every question's evidence exists; ids are unique; raise ValueError naming the first problem."""
        ids = [d.external_id for d in self.documents]
        if len(ids) != len(set(ids)):
            raise ValueError(f"{self.name}: duplicate document ids")
        known = set(ids)
        for q in self.questions:
            if not q.answers:
                raise ValueError(f"{self.name}: question {q.id} has no gold answer")
            missing = [d for d in q.doc_ids if d not in known]
            if missing:
                raise ValueError(f"{self.name}: question {q.id} cites unknown document {missing[0]}")
