"""The one shape every benchmark takes: documents with positions in a stream, and questions about them.

Owns: ``BenchDocument``, ``BenchQuestion`` and ``Benchmark``. Every dataset loader (the synthetic world,
SQuAD, StreamingQA, ArchivalQA, MSC, MetaICL) produces a ``Benchmark``; every protocol and method consumes
one. Knows nothing of models or storage.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class BenchDocument:
    id: str
    text: str
    timestamp: str | None = None
    source: str | None = None
    meta: dict = field(default_factory=dict)


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
    documents: list[BenchDocument]
    questions: list[BenchQuestion]
    meta: dict = field(default_factory=dict)

    def document(self, doc_id: str) -> BenchDocument:
        if not hasattr(self, "_by_id"):
            self._by_id = {d.id: d for d in self.documents}
        return self._by_id[doc_id]

    def validate(self) -> None:
        """Every question's evidence exists; ids are unique; raise ValueError naming the first problem."""
        ids = [d.id for d in self.documents]
        if len(ids) != len(set(ids)):
            raise ValueError(f"{self.name}: duplicate document ids")
        known = set(ids)
        for q in self.questions:
            if not q.answers:
                raise ValueError(f"{self.name}: question {q.id} has no gold answer")
            missing = [d for d in q.doc_ids if d not in known]
            if missing:
                raise ValueError(f"{self.name}: question {q.id} cites unknown document {missing[0]}")
