"""The serve benchmark's workload: what the synthetic world, or a dataset read from ``--data``, gives it to
store, ask and ingest.

Owns: ``Workload``; ``world_workload`` (the world's test split, seeded: its first documents to store, the
questions they answer and two disjoint sets of later documents for the ingest measurements);
``dataset_workload`` (a dataset such as memkit's English set: its first ``--n-docs`` documents stored, all of
them when it has fewer, the questions whose gold documents are all stored, and as fresh documents its unstored
documents and then ``workload_docs.marked_copies`` of its documents, recorded in ``Workload.about``); and
``choose_workload``, the choice ``--benchmark`` makes. Documents are the JSON bodies the HTTP API takes. Knows
nothing of processes, HTTP or timing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from experiments.bench.serve_common import BenchError
from experiments.bench.workload_docs import COPY_RULE, WORLD, document_json, load_dataset, marked_copies
from memkit.datasets.records import Benchmark
from memkit.documents import SourceDocument
from memkit.errors import ConfigError


@dataclass
class Workload:
    stored: list[dict]          # ingested before the measurements
    questions: list[dict]       # {"question", "answers"} about the stored documents, seeded order
    ingest_alone: list[dict]    # fresh documents, ingested with no load
    ingest_loaded: list[dict]   # other fresh documents, ingested during the load
    about: dict = field(default_factory=dict)   # what the JSON records of a dataset's workload; empty for the world


def choose_workload(benchmark: str, data: str | None, seed: int, n_docs: int, ingest_docs: int,
                    max_questions: int = 1000) -> Workload:
    """The workload ``--benchmark`` names: the world (seed ``seed``), or a dataset read from ``data``."""
    if benchmark == WORLD:
        return world_workload(seed, n_docs, ingest_docs, max_questions)
    return dataset_workload(benchmark, data, seed, n_docs, ingest_docs, max_questions)


def world_workload(seed: int, n_docs: int, ingest_docs: int, max_questions: int = 1000) -> Workload:
    """The synthetic world's test split (``experiments.bench.benchmarks.load("world", seed=...)``): its first
    ``n_docs`` documents (timestamp order) to store, the questions they answer (a seeded sample), and two
    disjoint sets of ``ingest_docs`` later documents."""
    from experiments.bench import benchmarks

    bench = benchmarks.load("world", seed=seed)
    need = n_docs + 2 * ingest_docs
    if len(bench.documents) < need:
        raise BenchError(f"the world (seed {seed}) has {len(bench.documents)} documents; --n-docs {n_docs} and "
                         f"2 x --ingest-docs {ingest_docs} need {need}")
    docs = bench.documents[:need]
    return _workload(bench, "the world", docs[:n_docs], docs[n_docs:n_docs + ingest_docs],
                     docs[n_docs + ingest_docs:], seed, max_questions)


def dataset_workload(benchmark: str, data: str | None, seed: int, n_docs: int, ingest_docs: int,
                     max_questions: int = 1000) -> Workload:
    """The dataset ``benchmark`` read from ``data``: its first ``n_docs`` documents stored (all of them when it
    has fewer: ``about["all_documents_stored"]``), the questions whose gold documents are all stored (a seeded
    sample), and two disjoint sets of ``ingest_docs`` fresh documents: its unstored documents first, then
    marked copies of its documents (``workload_docs.COPY_RULE``), none of them a stored text."""
    try:
        bench = load_dataset(benchmark, data, seed)
        stored = bench.documents[:n_docs]
        unstored = bench.documents[n_docs:2 * ingest_docs + n_docs]
        copies = marked_copies(bench.documents, 2 * ingest_docs - len(unstored))
    except ConfigError as exc:
        raise BenchError(str(exc)) from None
    fresh = unstored + copies
    work = _workload(bench, f"the {benchmark} set", stored, fresh[:ingest_docs], fresh[ingest_docs:], seed,
                     max_questions)
    work.about = {
        "benchmark": benchmark, "data": str(data), "documents": len(bench.documents),
        "questions": len(bench.questions), "n_docs_asked": n_docs, "stored": len(stored),
        "all_documents_stored": len(stored) == len(bench.documents),
        "fresh": {"unstored_documents": len(unstored), "marked_copies": len(copies),
                  "rule": ("the dataset's unstored documents in order, then " + COPY_RULE) if copies else
                  "the dataset's unstored documents in order"},
    }
    return work


def _workload(bench: Benchmark, what: str, stored: list[SourceDocument], alone: list[SourceDocument],
              loaded: list[SourceDocument], seed: int, max_questions: int) -> Workload:
    """The ``Workload`` of these documents: the questions of ``bench`` whose gold documents are all in
    ``stored``, shuffled by ``seed``, at most ``max_questions``."""
    held = {d.external_id for d in stored}
    asked = [{"question": q.question, "answers": list(q.answers)} for q in bench.questions
             if q.doc_ids and set(q.doc_ids) <= held]
    if not asked:
        raise BenchError(f"no question of {what} is answered by its first {len(stored)} documents")
    random.Random(seed).shuffle(asked)
    return Workload(stored=[document_json(d) for d in stored], questions=asked[:max_questions],
                    ingest_alone=[document_json(d) for d in alone],
                    ingest_loaded=[document_json(d) for d in loaded])
