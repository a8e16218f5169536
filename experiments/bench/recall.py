"""Retrieval recall: how often a question's own document is among the first k a method's keys find.

Every method's store gets the first ``--n-docs`` documents; each question with exactly one gold document among
them searches with the method's query key, and recall@k is the share of those questions whose document is
among the first k distinct documents found (best first). Only the keys are measured: nothing is generated.

    python -m experiments.bench.recall --methods slots,prompt,rag --n-docs 1000 --k 1,5 --seed 0 \\
        -o rag.embedder=lm

(``prompt`` searches whole documents with IDF-weighted lexical keys; ``rag`` with ``embedder=lm`` with the frozen
LM's mean-pooled hidden states, "plain LM keys".)

Owns: ``measure_recall`` and its command line. Knows the harness (``MethodSession``), not the CLI app.
"""

from __future__ import annotations

import sys
import time

from experiments.bench.config import BenchConfig, parse_ints
from experiments.bench.runner import MethodSession
from experiments.bench.script import harness_parser, load_harness, write_result
from memkit.errors import ConfigError


def measure_recall(benchmark, lm, cfg: BenchConfig, ks: list[int], *, batch: int = 64, log=None) -> dict:
    """Per method: recall@k (percent) for each k in ``ks``, overall and by question type, and the seconds its
    store took to build. Questions: those with one gold document among the first ``cfg.n_docs`` documents."""
    cfg.validate()
    if not ks or min(ks) < 1:
        raise ConfigError("recall needs k of at least 1 (--k)")
    docs = benchmark.documents[: cfg.n_docs] if cfg.n_docs else list(benchmark.documents)
    held = {d.external_id for d in docs}
    asked = [q for q in benchmark.questions if len(q.doc_ids) == 1 and q.doc_ids[0] in held]
    if not asked:
        raise ConfigError("no question has its one gold document among the chosen documents")
    depth = max(ks)
    rows = []
    for spec in cfg.specs():
        with MethodSession(lm, spec.name, spec.options, seed=cfg.seed, batch_size=cfg.batch_size) as session:
            start = time.perf_counter()
            session.ingest(docs)
            built = time.perf_counter() - start
            # a memory is a chunk for some methods: ask for enough memories to see `depth` distinct documents
            wanted = depth * max(1, session.store.stats()["memories"] // max(1, len(docs)))
            ranks = []
            for at in range(0, len(asked), batch):
                part = asked[at:at + batch]
                found = session.engine.retrieve_many([q.question for q in part], wanted)
                for q, row in zip(part, found):
                    order = list(dict.fromkeys(session.bench_ids.get(r.document_id) for r in row))
                    ranks.append(order.index(q.doc_ids[0]) if q.doc_ids[0] in order else None)
        by_type: dict[str, dict[str, float]] = {}
        for t in sorted({q.type or "single" for q in asked}):
            idx = [i for i, q in enumerate(asked) if (q.type or "single") == t]
            by_type[t] = {f"recall_at_{k}": _share([ranks[i] for i in idx], k) for k in ks}
        row = {"method": spec.name, "options": spec.options, "questions": len(asked),
               **{f"recall_at_{k}": _share(ranks, k) for k in ks}, "by_type": by_type,
               "ingest_seconds": round(built, 1)}
        rows.append(row)
        if log:
            log(f"{spec.name}: " + ", ".join(f"recall@{k} {row[f'recall_at_{k}']:.1f}" for k in ks))
    return {"benchmark": benchmark.name, "documents": len(docs), "seed": cfg.seed, "ks": ks,
            "model": lm.name, "device": str(lm.device), "methods": rows}


def _share(ranks: list, k: int) -> float:
    return round(100 * sum(1 for r in ranks if r is not None and r < k) / max(1, len(ranks)), 2)


def main(argv: list[str] | None = None) -> int:
    p = harness_parser("python -m experiments.bench.recall", __doc__.split("\n\n")[0], methods="slots,prompt",
                       methods_help="comma-separated methods whose keys are measured", n_docs=1000,
                       n_docs_help="documents in every method's store", batch_help="documents read together at ingest")
    p.add_argument("--k", default="1,5", help="comma-separated k of recall@k")
    args = p.parse_args(argv)
    try:
        ks = parse_ints(args.k, "--k")
        cfg, bench, lm = load_harness(args)
        result = measure_recall(bench, lm, cfg, ks, log=lambda line: print(line, file=sys.stderr, flush=True))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for row in result["methods"]:
        print(f"{row['method']:<10} " + "  ".join(f"recall@{k} {row[f'recall_at_{k}']:5.1f}" for k in ks)
              + f"  ({row['questions']} questions, {result['documents']} documents)")
    return write_result(args, result)


if __name__ == "__main__":
    sys.exit(main())
