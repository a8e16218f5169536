"""Running one memory method over benchmark documents and questions, and recording every answer.

Owns: ``MethodSession`` (one method on one fresh store in a temporary directory: ingest a benchmark's documents
into the stream "bench", answer ``BenchQuestion`` s in batches, and keep the costs of doing
so), ``QuestionResult`` (what one answer scored and cost) and ``run_method`` (ingest everything, ask
everything). In the ``oracle`` setting the question's gold documents are handed to the method instead of
being searched for. Knows nothing of protocols, reports or the CLI; metrics and cost formulas are imported.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from experiments.bench import costs
from experiments.bench.config import settings_of
from memkit.datasets.records import BenchQuestion, Benchmark
from memkit.datasets.metrics import exact_match, f1
from memkit.engine import Engine
from memkit.errors import ConfigError
from memkit.methods import METHODS, Retrieved, canonical_name
from memkit.documents import SourceDocument
from memkit.service.collections import new_collection
from storage import Store
from storage.types import content_hash

STREAM = "bench"

AnswerHook = Callable[[int], None]


@dataclass
class QuestionResult:
    """One question as one method answered it: the prediction, its scores (0..1) and what it cost."""

    question_id: str
    question: str
    type: str
    answers: list[str]
    prediction: str
    em: float
    f1: float
    latency_ms: float
    prompt_tokens: int                 # tokens read before generating, the tokenizer's leading tokens included
    generated_tokens: int
    truncated: bool                    # the method cut its context to fit the model's window
    sources: list[str]                 # benchmark ids of the documents the answer cites
    gold_doc_ids: list[str]
    method: str
    setting: str
    meta: dict = field(default_factory=dict)
    read_tokens: int = 0               # tokens a method read for the question besides the prompt (slot models)

    @property
    def tokens_processed(self) -> int:
        return self.prompt_tokens + self.generated_tokens + self.read_tokens

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "tokens_processed": self.tokens_processed}


class MethodSession:
    """One method with one fresh store (in a temporary directory unless ``root`` is given); close when done."""

    def __init__(self, lm, method: str, options: dict | None = None, *, setting: str | None = None, seed: int = 0,
                 batch_size: int = 8, root: str | Path | None = None, params: int | None = None):
        self.lm = lm
        name = canonical_name(method)
        options = dict(options or {})
        config_fields = {f.name for f in dataclasses.fields(METHODS[name][1])}
        if "seed" in config_fields:
            options.setdefault("seed", seed)
        self.setting = setting or settings_of(name)[0]
        if self.setting not in settings_of(name):
            raise ConfigError(f"method {name} has no setting {self.setting!r}; it takes {', '.join(settings_of(name))}")
        torch.manual_seed(seed)
        costs.reset_peak_memory(lm.device)
        made = new_collection(lm, name, options, revision=lm.revision)
        self.method = made.method
        self._tmp = tempfile.TemporaryDirectory(prefix="memkit-bench-") if root is None else None
        path = Path(self._tmp.name if self._tmp else root) / "store"
        self.store = Store.create(path, **made.spec)
        self.engine = Engine(lm, self.method, self.store, batch_size=batch_size)
        self.batch_size = batch_size
        self.params = params if params is not None else costs.non_embedding_params(lm.model)
        self.store_ids: dict[str, int] = {}      # benchmark document id -> store document id
        self.bench_ids: dict[int, str] = {}      # store document id -> first benchmark id with that text
        self.texts: dict[str, str] = {}
        self.encode_flops = 0.0
        self.encode_seconds = 0.0

    @property
    def name(self) -> str:
        return self.method.name

    def ingest(self, documents: Sequence[SourceDocument]) -> None:
        """Absorb ``documents`` in order (texts already held are skipped by the engine)."""
        if not documents:
            return
        # a copy of each in the benchmark's stream (the engine numbers stream positions on what it is given)
        items = [dataclasses.replace(d, stream=STREAM, position=None, meta={}) for d in documents]
        new = [d.text for d in documents if self.store.find_by_hash(content_hash(d.text)) is None]
        trained = getattr(self.method, "trained_tokens", 0)
        start = time.perf_counter()
        report = self.engine.ingest(items)
        self.encode_seconds += time.perf_counter() - start
        if report.failed:
            raise ConfigError(f"benchmark document refused: {report.failed[0]}")
        forward = costs.encode_forward_tokens(self.method, self.lm, list(dict.fromkeys(new)))
        trained = getattr(self.method, "trained_tokens", 0) - trained
        self.encode_flops += costs.encode_flops(self.params, forward, trained)
        for d in documents:
            sid = self.store.find_by_hash(content_hash(d.text))
            self.store_ids[d.external_id] = sid
            self.bench_ids.setdefault(sid, d.external_id)
            self.texts[d.external_id] = d.text

    def ask(self, questions: Sequence[BenchQuestion], on_answer: AnswerHook | None = None) -> list[QuestionResult]:
        """Answer ``questions`` in batches; each result is scored against its gold answers."""
        results: list[QuestionResult] = []
        for start in range(0, len(questions), self.batch_size):
            part = list(questions[start:start + self.batch_size])
            given = [self._gold(q) for q in part] if self.setting == "oracle" else None
            answers = self.engine.ask_many([q.question for q in part], batch_size=self.batch_size, retrieved=given)
            for q, a in zip(part, answers):
                results.append(QuestionResult(
                    question_id=q.id, question=q.question, type=q.type or "single", answers=list(q.answers),
                    prediction=a.text, em=exact_match(a.text, q.answers), f1=f1(a.text, q.answers),
                    latency_ms=float(a.timings.get("total", 0.0)),
                    prompt_tokens=a.usage.prompt_tokens + len(self.lm.bos_ids),
                    generated_tokens=a.usage.generated_tokens,
                    read_tokens=a.usage.read_tokens or 0,
                    truncated=a.notes.truncated,
                    sources=[self.bench_ids.get(s.document_id, str(s.document_id)) for s in a.sources],
                    gold_doc_ids=list(q.doc_ids), method=self.name, setting=self.setting))
            if on_answer is not None:
                on_answer(len(part))
        return results

    def _gold(self, question: BenchQuestion) -> list[Retrieved]:
        """The question's gold documents as memories, in the order the question lists them; a method that reads
        stored tensors (``needs_payload``) gets each gold document's stored records with their payloads."""
        out = []
        for doc_id in question.doc_ids:
            if doc_id not in self.store_ids:
                continue
            sid = self.store_ids[doc_id]
            if not self.method.needs_payload:
                out.append(Retrieved(memory_id=-1, document_id=sid, score=1.0, kind="doc", source=doc_id,
                                     span=None, text=self.texts[doc_id]))
                continue
            for m in self.store.memories(sid):
                out.append(Retrieved(memory_id=m.id, document_id=sid, score=1.0, kind=m.kind, source=doc_id,
                                     span=m.span, text=self.texts[doc_id],
                                     payload=self.store.load_payload(m.id)))
        return out

    def snapshot(self) -> dict:
        """Costs so far: encode FLOPs and seconds, documents and bytes stored, peak memory."""
        stats = self.store.stats()
        return {"encode_flops": self.encode_flops, "encode_seconds": self.encode_seconds,
                "documents": int(stats["documents"]), "stored_bytes": costs.stored_bytes(stats),
                "state_bytes": int(stats.get("state_bytes") or 0),
                "peak_memory_mb": costs.peak_memory_mb(self.lm.device)}

    def close(self) -> None:
        self.store.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> MethodSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_method(benchmark: Benchmark, method_name: str, lm, options: dict | None = None, *, setting: str | None = None,
               seed: int = 0, batch_size: int = 8, on_answer: AnswerHook | None = None) -> list[QuestionResult]:
    """Ingest every document of ``benchmark`` into a fresh store with the method, then answer every question."""
    with MethodSession(lm, method_name, options, setting=setting, seed=seed, batch_size=batch_size) as session:
        session.ingest(benchmark.documents)
        return session.ask(benchmark.questions, on_answer)
