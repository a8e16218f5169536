"""Documents for the throughput benchmarks (``experiments.bench.serve``, ``experiments.bench.ingest_rate``) when
their workload is a dataset rather than the synthetic world, and the one rule that makes more documents than
the dataset has.

Owns: ``load_dataset`` (the benchmark ``--benchmark`` names, read from ``--data``, which a dataset requires),
the copy rule (``marked_copies``, described by ``COPY_RULE``: a dataset's documents again, each with a marker
line prepended, so each copy is a new document to the store's duplicate check) and ``document_json`` (one
document as the JSON body the HTTP API and ``memkit ingest``'s JSONL streams take). Every failure is a
``ConfigError`` naming the flag to change. Knows nothing of processes, HTTP, models or timing.
"""

from __future__ import annotations

from dataclasses import replace

from memkit.datasets.records import Benchmark
from memkit.documents import SourceDocument
from memkit.errors import ConfigError
from memkit.recipes.data import WORLD

COPY_RULE = ("marked copies: the dataset's documents in order, again and again; round k's copy of a document "
             "has the line '[memkit bench copy k]' prepended to its text and the id '<id>~copy<k>'")
"""What the JSON records as the rule that made documents beyond the dataset's own."""


def load_dataset(benchmark: str, data: str | None, seed: int = 0) -> Benchmark:
    """The dataset ``benchmark`` (not the world) read from ``data``; a ``ConfigError`` naming --data when it is
    missing, and the loader's own (naming the path) when it does not read."""
    from experiments.bench import benchmarks

    if benchmark == WORLD:
        raise ConfigError("the world is built from --seed, not read from --data; load it with benchmarks.load")
    if not data:
        raise ConfigError(f"--benchmark {benchmark} is read from local files: pass its directory or file with "
                          f"--data PATH (e.g. --data experiments/data/english)")
    return benchmarks.load(benchmark, data=data, seed=seed)


def marked_copy(doc: SourceDocument, k: int) -> SourceDocument:
    """Round ``k``'s copy of ``doc`` under ``COPY_RULE``."""
    return replace(doc, text=f"[memkit bench copy {k}]\n{doc.text}", external_id=f"{doc.external_id}~copy{k}",
                   meta=dict(doc.meta))


def marked_copies(documents: list[SourceDocument], n: int) -> list[SourceDocument]:
    """The first ``n`` copies of ``documents`` under ``COPY_RULE`` (round 1 of every document, then round 2, ...);
    none when ``n`` < 1."""
    if n < 1:
        return []
    if not documents:
        raise ConfigError("the dataset has no documents to copy")
    return [marked_copy(documents[i % len(documents)], 1 + i // len(documents)) for i in range(n)]


def document_json(doc: SourceDocument) -> dict:
    """``doc`` as ``{"text", "id"[, "timestamp"][, "source"]}``: the body of one document to the HTTP API and a
    line of a JSONL stream to ``memkit ingest``."""
    out = {"text": doc.text, "id": doc.external_id}
    if doc.timestamp:
        out["timestamp"] = doc.timestamp
    if doc.source:
        out["source"] = doc.source
    return out
