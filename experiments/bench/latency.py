"""Latency of methods against each other, measured in interleaved rounds on the same questions.

``memkit bench`` runs one method after another, minutes apart, and a shared machine's speed drifts over
minutes (closed-book p50 ranged 3.3 to 4.4 ms across the rows of one run on the 2-core CPU), so a ratio of two
of its p50s mixes the methods' costs with that drift. Here every method's store is built first; then, in each
round, every method answers the same questions (in a rotated order from round to round), and the ratio of
each method's p50 to the reference method's p50 is taken within the round. The median of the rounds' ratios
is the number to report.

    python -m experiments.bench.latency --methods closed,adapter,adapter:oracle --n-docs 200 \\
        --questions 600 --rounds 5 --seed 0

Owns: ``compare_latency`` and its command line. Knows the harness (``MethodSession``), not the CLI app.
"""

from __future__ import annotations

import statistics
import sys

from experiments.bench.config import BenchConfig
from memkit.datasets.metrics import percentile
from experiments.bench.runner import MethodSession
from experiments.bench.script import harness_parser, load_harness, write_result
from experiments.bench.suite import sample_questions
from memkit.errors import ConfigError


def compare_latency(benchmark, lm, cfg: BenchConfig, *, n_questions: int, rounds: int, warmup: int = 40,
                    log=None) -> dict:
    """Per method (the first is the reference): each round's p50 and mean latency (ms per question, the
    answers' ``total`` timing, batches of ``cfg.batch_size``), its F1, and the round-by-round ratio of its p50
    to the reference's, with their median. Questions: those of the first ``cfg.n_docs`` documents, a seeded
    sample of ``n_questions``."""
    cfg.validate()
    if rounds < 1 or n_questions < 1:
        raise ConfigError("latency needs at least one round and one question")
    docs = benchmark.documents[: cfg.n_docs] if cfg.n_docs else list(benchmark.documents)
    held = {d.external_id for d in docs}
    asked = [q for q in benchmark.questions if q.doc_ids and set(q.doc_ids) <= held]
    asked = sample_questions(asked, n_questions, cfg.seed)
    if not asked:
        raise ConfigError("no questions are answered by the chosen documents")
    specs = cfg.specs()
    sessions = []
    try:
        for spec in specs:
            session = MethodSession(lm, spec.name, spec.options, setting=spec.setting, seed=cfg.seed,
                                    batch_size=cfg.batch_size)
            sessions.append(session)
            session.ingest(docs)
            session.ask(asked[:warmup])
            if log:
                log(f"{spec.label}: {len(docs)} documents ingested")
        p50 = [[0.0] * rounds for _ in specs]
        mean = [[0.0] * rounds for _ in specs]
        f1 = [0.0] * len(specs)
        for r in range(rounds):
            order = list(range(len(specs)))
            order = order[r % len(order):] + order[: r % len(order)]
            for i in order:
                results = sessions[i].ask(asked)
                times = [x.latency_ms for x in results]
                p50[i][r] = percentile(times, 50)
                mean[i][r] = sum(times) / len(times)
                f1[i] = 100 * sum(x.f1 for x in results) / len(results)
            if log:
                log(f"round {r + 1}/{rounds}: " + ", ".join(f"{s.label} {p50[i][r]:.2f}" for i, s in enumerate(specs)))
    finally:
        for session in sessions:
            session.close()
    rows = []
    for i, spec in enumerate(specs):
        ratios = [p50[i][r] / p50[0][r] for r in range(rounds)]
        rows.append({"method": spec.label, "f1": round(f1[i], 2), "p50_ms": [round(x, 3) for x in p50[i]],
                     "mean_ms": [round(x, 3) for x in mean[i]], "ratio_to_reference": [round(x, 3) for x in ratios],
                     "median_ratio": round(statistics.median(ratios), 3),
                     "median_p50_ms": round(statistics.median(p50[i]), 3)})
    return {"benchmark": benchmark.name, "reference": specs[0].label, "documents": len(docs),
            "questions": len(asked), "rounds": rounds, "batch_size": cfg.batch_size, "seed": cfg.seed,
            "device": str(lm.device), "model": lm.name, "methods": rows}


def main(argv: list[str] | None = None) -> int:
    p = harness_parser("python -m experiments.bench.latency", __doc__.split("\n\n")[0],
                       methods="closed,adapter,adapter:oracle",
                       methods_help="comma-separated; the first is the reference the others are divided by",
                       n_docs=200, n_docs_help="documents ingested into every method's store",
                       batch_help="questions answered together")
    p.add_argument("--questions", type=int, default=600, help="questions per round (a seeded sample)")
    p.add_argument("--rounds", type=int, default=5, help="rounds; every method answers every question in each")
    args = p.parse_args(argv)
    try:
        cfg, bench, lm = load_harness(args)
        result = compare_latency(bench, lm, cfg, n_questions=args.questions, rounds=args.rounds,
                                 log=lambda line: print(line, file=sys.stderr, flush=True))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for row in result["methods"]:
        print(f"{row['method']:<16} F1 {row['f1']:5.1f}  p50 ms {row['median_p50_ms']:6.2f} (rounds "
              f"{', '.join(f'{x:.2f}' for x in row['p50_ms'])})  x{row['median_ratio']:.2f} of {result['reference']}")
    return write_result(args, result)


if __name__ == "__main__":
    sys.exit(main())
