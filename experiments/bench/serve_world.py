"""The serve benchmark's workload: what the synthetic world gives it to store, ask and ingest.

Owns: ``Workload`` and ``world_workload``: the world's test split (seeded), its first documents to store, the
questions they answer (a seeded sample) and two disjoint sets of later documents for the ingest measurements,
as the JSON bodies the HTTP API takes. Knows nothing of processes, HTTP or timing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from experiments.bench.serve_common import BenchError


@dataclass
class Workload:
    stored: list[dict]          # ingested before the measurements
    questions: list[dict]       # {"question", "answers"} about the stored documents, seeded order
    ingest_alone: list[dict]    # fresh documents, ingested with no load
    ingest_loaded: list[dict]   # other fresh documents, ingested during the load


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

    def doc(d) -> dict:
        out = {"text": d.text, "id": d.external_id}
        if d.timestamp:
            out["timestamp"] = d.timestamp
        if d.source:
            out["source"] = d.source
        return out

    docs = [doc(d) for d in bench.documents[:need]]
    held = {d.external_id for d in bench.documents[:n_docs]}
    asked = [{"question": q.question, "answers": list(q.answers)} for q in bench.questions
             if q.doc_ids and set(q.doc_ids) <= held]
    if not asked:
        raise BenchError(f"no question of the world is answered by its first {n_docs} documents")
    random.Random(seed).shuffle(asked)
    return Workload(stored=docs[:n_docs], questions=asked[:max_questions],
                    ingest_alone=docs[n_docs:n_docs + ingest_docs], ingest_loaded=docs[n_docs + ingest_docs:need])
