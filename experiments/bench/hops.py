"""Fit a hop model (``memkit.hops``) on fresh worlds and measure the second hop on benchmark worlds.

    python -m experiments.bench.hops --fit-worlds 3 --seeds 0 1 --out build/world-hop

Fits among the lexical keys (the world methods' default embedder) on the test splits of worlds 20,001 ..
20,000 + N (never a benchmark world), then reports per benchmark world seed and question type: how often the
first hop's 4 best miss a gold document, how often the gate opens, and the second document's recall at 1 and 5
(of the documents the first hop did not find) where the first hop's best was gold. Searches are exact (a flat
index), whole documents as memories. Prints JSON; ``--out`` saves the model with the fit's numbers. (The same
fit as ``memkit train hop --eval-data world:0 --eval-data world:1``.)

    python -m experiments.bench.hops --hop build/world-hop --f1 adapter rag --seeds 0 1

With ``--f1``: each method on the packaged world LM, on a store of the world's whole test split, answers every
two-document question and a seeded sample of ``--sample`` questions of each other type, once with one search
and once with the hop model (``--hop``: a saved one instead of fitting); F1 per type and how often an answer
read a second hop's document.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from memkit.embedders import LexicalEmbedder
from memkit.recipes import hop as hop_recipe


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m experiments.bench.hops", description=__doc__.split("\n")[0])
    parser.add_argument("--fit-worlds", type=int, default=3, help="worlds to fit on (seeds 20,001 on)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="benchmark worlds to measure on")
    parser.add_argument("--first-k", type=int, default=4, help="documents the first hop finds")
    parser.add_argument("--out", type=Path, default=None, help="save the fitted hop model here")
    parser.add_argument("--hop", type=Path, default=None, help="a saved hop model (no fitting)")
    parser.add_argument("--f1", nargs="*", default=None, help="methods whose F1 to measure with and without the hop")
    parser.add_argument("--sample", type=int, default=300, help="questions of each type but two-document, for --f1")
    parser.add_argument("-o", "--option", action="append", default=[], help="METHOD.OPTION=VALUE for --f1")
    args = parser.parse_args(argv)
    if args.hop is not None:
        return answer_f1(args)
    from experiments.world.recipes import HOP_FIT_WORLD_BASE, hop_benchmarks

    fit_on = [b for k in range(1, args.fit_worlds + 1) for b in hop_benchmarks(HOP_FIT_WORLD_BASE + k)]
    measure_on = [b for seed in args.seeds for b in hop_benchmarks(seed)]
    _, report = hop_recipe.run(fit_on, LexicalEmbedder(), measure_on=measure_on, first_k=args.first_k,
                               out=args.out, log=lambda m: print(m, flush=True))
    print(json.dumps(report, indent=1))
    return report


def answer_f1(args) -> dict:
    """F1 per question type of ``args.f1``'s methods with one search and with the hop model ``args.hop``."""
    import random

    from experiments.bench.benchmarks import load
    from experiments.bench.runner import MethodSession
    from memkit.defaults import default_model
    from memkit.lm import FrozenLM

    lm = FrozenLM.load(default_model())
    options: dict[str, dict] = {}
    for item in args.option:
        key, value = item.split("=", 1)
        method, name = key.split(".", 1)
        options.setdefault(method, {})[name] = value
    report: dict = {"hop": str(args.hop), "model": lm.name, "seeds": {}}
    for seed in args.seeds:
        bench = load("world", seed=seed)
        rng = random.Random(seed)
        questions = [q for q in bench.questions if q.type == "two_hop"]
        for kind in sorted({q.type for q in bench.questions} - {"two_hop"}):
            pool = [q for q in bench.questions if q.type == kind]
            questions += rng.sample(pool, min(args.sample, len(pool)))
        for method in args.f1 or ["adapter"]:
            for hop in (False, True):
                opts = dict(options.get(method, {}))
                if hop:
                    opts["hop_model"] = str(args.hop)
                session = MethodSession(lm, method, opts, seed=seed)
                try:
                    start = time.time()
                    session.ingest(bench.documents)
                    results = session.ask(questions)
                    seconds = time.time() - start
                finally:
                    session.close()
                rows: dict = {}
                for r in results:
                    row = rows.setdefault(r.type, {"questions": 0, "f1": 0.0, "second_doc_cited": 0})
                    row["questions"] += 1
                    row["f1"] += 100 * r.f1
                    row["second_doc_cited"] += len(r.gold_doc_ids) > 1 and r.gold_doc_ids[1] in r.sources
                for row in rows.values():
                    row["f1"] = round(row["f1"] / row["questions"], 1)
                key = f"{method}{'+hop' if hop else ''}"
                report["seeds"].setdefault(seed, {})[key] = {"seconds": round(seconds, 1), "by_type": rows}
                print(key, seed, json.dumps(rows), flush=True)
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
