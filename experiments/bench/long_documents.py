"""The world with long documents: what a reader that cuts a long document loses (docs/slots.md, "Long documents").

The world's own documents are short (at most about 105 tokens of the world LM's tokenizer, under the slot
model's 256-token window), so the benchmark never shows what happens to a longer one. Here every ``group``
consecutive test documents of the stream (first ``--n-docs``) are joined, a blank line between them, into one
document (about 350 tokens for 4); each question's gold documents become the joined documents holding them. A
method is run on it (default ``slots:oracle``) and the F1 is reported overall, by question type, and by where
the question's evidence lies: ``tail`` when every gold original lies within the joined document's last
``--window`` tokens (what a reader keeping the last tokens sees), ``cut`` otherwise.

    python -m experiments.bench.long_documents --methods slots:oracle --n-docs 500 --group 4 \\
        --max-questions 1000 --seed 0 --json build/long_documents.json

Knows nothing of storage; runs ``experiments.bench.runner.run_method``.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import defaultdict

from experiments.bench import benchmarks
from memkit.datasets.records import BenchQuestion, Benchmark, bench_document
from experiments.bench.runner import run_method


def joined(bench: Benchmark, n_docs: int, group: int) -> tuple[Benchmark, dict[str, tuple[str, int, int]]]:
    """The benchmark of joined documents, and for each original document id (joined id, start, end) in characters."""
    docs = bench.documents[:n_docs]
    where: dict[str, tuple[str, int, int]] = {}
    out = []
    for start in range(0, len(docs), group):
        part = docs[start:start + group]
        jid = f"joined-{start // group}"
        text, pieces = "", []
        for d in part:
            if text:
                text += "\n\n"
            pieces.append((d.external_id, len(text), len(text) + len(d.text)))
            text += d.text
        for did, a, b in pieces:
            where[did] = (jid, a, b)
        out.append(bench_document(id=jid, text=text, timestamp=part[-1].timestamp, source=jid))
    questions = []
    for q in bench.questions:
        if q.doc_ids and all(d in where for d in q.doc_ids):
            ids = list(dict.fromkeys(where[d][0] for d in q.doc_ids))
            questions.append(BenchQuestion(id=q.id, question=q.question, answers=list(q.answers), doc_ids=ids,
                                           type=q.type, timestamp=q.timestamp,
                                           meta={**q.meta, "originals": list(q.doc_ids)}))
    return Benchmark(name=f"{bench.name}-joined{group}", documents=out, questions=questions), where


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="slots:oracle")
    parser.add_argument("--n-docs", type=int, default=500)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--max-questions", type=int, default=1000)
    parser.add_argument("--window", type=int, default=256, help="The tokens a cutting reader keeps (its last).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="", help="A slot model directory (option model of slots and hybrid).")
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)

    from memkit.defaults import default_model
    from memkit.lm import FrozenLM

    lm = FrozenLM.load(default_model(), device="cpu", dtype="float32")
    bench, where = joined(benchmarks.load("world", seed=args.seed), args.n_docs, args.group)
    questions = list(bench.questions)
    random.Random(args.seed).shuffle(questions)
    bench.questions = questions[: args.max_questions]
    texts = {d.external_id: d.text for d in bench.documents}
    lengths = [lm.count_tokens(t) for t in texts.values()]
    longer = sum(n + len(lm.bos_ids) > args.window for n in lengths)

    def part(q: BenchQuestion) -> str:
        for original in q.meta["originals"]:
            jid, start, _ = where[original]
            if lm.count_tokens(texts[jid][start:]) + len(lm.bos_ids) > args.window:
                return "cut"
        return "tail"

    parts = {q.id: part(q) for q in bench.questions}
    report = {"documents": len(texts), "tokens_max": max(lengths), "tokens_mean": sum(lengths) / len(lengths),
              "longer_than_window": longer, "questions": len(bench.questions),
              "by_part_questions": {p: sum(v == p for v in parts.values()) for p in ("tail", "cut")},
              "seed": args.seed, "group": args.group, "model": args.model, "results": {}}
    print(f"{len(texts)} joined documents, {longer} longer than {args.window} tokens "
          f"(mean {report['tokens_mean']:.0f}, max {max(lengths)}); {len(bench.questions)} questions "
          f"({report['by_part_questions']})")
    for spec in args.methods.split(","):
        name, _, setting = spec.partition(":")
        start = time.time()
        options = {"model": args.model} if args.model and name in ("slots", "hybrid") else {}
        results = run_method(bench, name, lm, options, setting=setting or None, seed=args.seed)
        by_type, by_part = defaultdict(list), defaultdict(list)
        for r in results:
            by_type[r.type].append(r.f1)
            by_part[parts[r.question_id]].append(r.f1)
        mean = lambda xs: round(100 * sum(xs) / max(1, len(xs)), 1)   # noqa: E731
        row = {"f1": mean([r.f1 for r in results]), "em": mean([r.em for r in results]),
               "f1_by_type": {k: mean(v) for k, v in sorted(by_type.items())},
               "f1_by_part": {k: mean(v) for k, v in sorted(by_part.items())},
               "seconds": round(time.time() - start, 1)}
        report["results"][spec] = row
        print(spec, json.dumps(row))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)


if __name__ == "__main__":
    main()
