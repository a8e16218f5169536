"""Fit a hop model (``memkit.hops``) on fresh worlds and measure the second hop on benchmark worlds.

    python -m experiments.bench.hops --fit-worlds 3 --seeds 0 1 --out build/world-hop

Fits among the lexical keys (the world methods' default embedder) on the test splits of worlds 20,001 ..
20,000 + N (never a benchmark world), then reports per benchmark world seed and question type: how often the
first hop's 4 best miss a gold document, how often the gate opens, and the second document's recall at 1 and 5
(of the documents the first hop did not find) where the first hop's best was gold. Searches are exact (a flat
index), whole documents as memories. Prints JSON; ``--out`` saves the model with the fit's numbers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from memkit.embedders import LexicalEmbedder
from memkit.hops import fit_hop_model
from memkit.recipes.hop import bank_of, second_hop_recall

FIT_WORLD_BASE = 20_000


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m experiments.bench.hops", description=__doc__.split("\n")[0])
    parser.add_argument("--fit-worlds", type=int, default=3, help="worlds to fit on (seeds 20,001 on)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="benchmark worlds to measure on")
    parser.add_argument("--first-k", type=int, default=4, help="documents the first hop finds")
    parser.add_argument("--out", type=Path, default=None, help="save the fitted hop model here")
    args = parser.parse_args(argv)
    from experiments.world.entities import WorldConfig
    from experiments.world.export import load_world_benchmark

    emb = LexicalEmbedder()
    start = time.time()
    banks = [bank_of(load_world_benchmark(WorldConfig(seed=FIT_WORLD_BASE + k), "test"), emb)[0]
             for k in range(1, args.fit_worlds + 1)]
    model, fit = fit_hop_model(banks, emb.describe(), first_k=args.first_k,
                               log=lambda m: print(m, flush=True))
    report = {"fit": {**fit.to_dict(), "worlds": [FIT_WORLD_BASE + k for k in range(1, args.fit_worlds + 1)],
                      "seconds": round(time.time() - start, 1)}, "seeds": {}}
    for seed in args.seeds:
        bank, types = bank_of(load_world_benchmark(WorldConfig(seed=seed), "test"), emb)
        report["seeds"][seed] = second_hop_recall(model, bank, types, first_k=args.first_k)
    if args.out is not None:
        model.save(args.out, extra={"fit": report["fit"]})
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
