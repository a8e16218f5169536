"""What the harness's small command lines share: their common flags and loading what they name.

Owns: ``harness_parser`` (``--benchmark --data --methods --n-docs --batch-size --seed --model --device -o
--json``), ``load_harness`` (the ``BenchConfig``, the benchmark and the frozen LM those flags name) and
``write_result`` (the result to ``--json``).
Used by ``experiments.bench.latency`` and ``experiments.bench.recall``.
"""

from __future__ import annotations

import argparse
import json

from experiments.bench.config import BenchConfig, parse_options


def harness_parser(prog: str, description: str, *, methods: str, methods_help: str, n_docs: int,
                   n_docs_help: str, batch_help: str) -> argparse.ArgumentParser:
    """A parser with the shared flags; the caller adds its own."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--benchmark", default="world", help="world, or a dataset read with --data")
    p.add_argument("--data", default=None, help="the dataset's local file or directory")
    p.add_argument("--methods", default=methods, help=methods_help)
    p.add_argument("--n-docs", type=int, default=n_docs, help=n_docs_help)
    p.add_argument("--batch-size", type=int, default=8, help=batch_help)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=None, help="model hub id or directory (default: the packaged world LM)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("-o", "--option", action="append", default=[], help="METHOD.OPTION=VALUE, repeatable")
    p.add_argument("--json", default=None, help="write the result here as JSON")
    return p


def load_harness(args: argparse.Namespace):
    """``(cfg, benchmark, lm)`` from the shared flags; raises ``ConfigError`` naming the flag to change."""
    from experiments.bench import benchmarks
    from memkit.defaults import default_model
    from memkit.lm import FrozenLM

    cfg = BenchConfig(methods=[m.strip() for m in args.methods.split(",") if m.strip()], n_docs=args.n_docs,
                      seed=args.seed, batch_size=args.batch_size, method_options=parse_options(args.option))
    bench = benchmarks.load(args.benchmark, data=args.data, seed=args.seed)
    return cfg, bench, FrozenLM.load(args.model or default_model(), device=args.device)


def write_result(args: argparse.Namespace, result: dict) -> int:
    """Write ``result`` to ``--json`` when given; the exit status (0)."""
    if args.json:
        with open(args.json, "w") as f:
            f.write(json.dumps(result, indent=2) + "\n")
    return 0
