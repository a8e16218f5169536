"""The world's as-of questions ("Where did X live on DATE?") answered with and without ``as_of``.

``python -m experiments.bench.as_of [--methods rag,adapter] [--seed 0] [--max-questions 300]``: every document of
the world's test split is ingested (in timestamp order, with its timestamp) into a fresh store per method; each
as-of question is asked twice through ``Engine.ask_many``, once plainly and once with ``as_of`` = its date (what
``memkit ask --as-of`` and the server's ``as_of`` do). Reported per method and mode: EM, F1, and how many of
the answers' sources are dated after the question's date (``later_sources``: what ``as_of`` removes). Writes
JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections import defaultdict

from memkit.datasets.metrics import exact_match, f1
from experiments.bench.runner import MethodSession
from experiments.world.entities import WorldConfig
from experiments.world.export import load_world_benchmark


def measure(lm, method: str, seed: int, max_questions: int, batch_size: int = 16) -> dict:
    bench = load_world_benchmark(WorldConfig(seed=seed), "test")
    questions = [q for q in bench.questions if q.type == "as_of" and q.timestamp][:max_questions]
    when = {d.text: d.timestamp for d in bench.documents}
    out = {"method": method, "questions": len(questions), "documents": len(bench.documents)}
    with MethodSession(lm, method, seed=seed) as session:
        t0 = time.perf_counter()
        session.ingest(bench.documents)
        out["ingest_seconds"] = round(time.perf_counter() - t0, 1)
        stamps = {sid: when.get(session.texts[bid]) for bid, sid in session.store_ids.items()}
        for mode in ("plain", "as_of"):
            groups: dict[str | None, list] = defaultdict(list)
            for q in questions:
                groups[q.timestamp if mode == "as_of" else None].append(q)
            em = f1s = later = total_sources = 0.0
            t0 = time.perf_counter()
            for date, group in groups.items():
                for start in range(0, len(group), batch_size):
                    part = group[start:start + batch_size]
                    answers = session.engine.ask_many([q.question for q in part], batch_size=batch_size,
                                                      as_of=date)
                    for q, a in zip(part, answers):
                        em += exact_match(a.text, q.answers)
                        f1s += f1(a.text, q.answers)
                        cut = q.timestamp[:10]
                        later += sum(1 for s in a.sources if (stamps.get(s.document_id) or "")[:10] > cut)
                        total_sources += len(a.sources)
            n = max(1, len(questions))
            out[mode] = {"em": round(100 * em / n, 1), "f1": round(100 * f1s / n, 1),
                         "later_sources": round(later / max(1, total_sources), 3),
                         "seconds": round(time.perf_counter() - t0, 1)}
    return out


def main(argv: list[str] | None = None) -> None:
    from memkit.defaults import default_model
    from memkit.lm import FrozenLM

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", default="rag,adapter")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-questions", type=int, default=300)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    lm = FrozenLM.load(default_model(), device="cpu")
    results = [measure(lm, m, args.seed, args.max_questions) for m in args.methods.split(",")]
    report = {"command": " ".join(["python -m experiments.bench.as_of", *(argv or sys.argv[1:])]),
              "seed": args.seed, "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
              "results": results}
    print("| method | questions | EM plain | F1 plain | later sources plain | EM as_of | F1 as_of | later sources as_of |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['method']} | {r['questions']} | {r['plain']['em']} | {r['plain']['f1']} | "
              f"{r['plain']['later_sources']} | {r['as_of']['em']} | {r['as_of']['f1']} | "
              f"{r['as_of']['later_sources']} |")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(report, fh, indent=2)


if __name__ == "__main__":
    main()
