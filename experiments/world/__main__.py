"""Command line of the synthetic world: ``python -m experiments.world export|stats``.

Owns: parsing flags into a ``WorldConfig`` and printing one line per mistake. Knows nothing of memkit.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

from experiments.world.entities import WorldConfig, build_world
from experiments.world.export import ALL, export_split
from experiments.world.names import SPLITS
from experiments.world.questions import questions
from experiments.world.render import documents


def _config(args: argparse.Namespace) -> WorldConfig:
    return WorldConfig(seed=args.seed, n_pretrain=args.n_pretrain, n_train=args.n_train, n_test=args.n_test,
                       persons_per_org=args.persons_per_org, update_prob=args.update_prob,
                       max_updates=args.max_updates)


def _parser() -> argparse.ArgumentParser:
    defaults = WorldConfig()
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--seed", type=int, default=defaults.seed)
    common.add_argument("--n-pretrain", type=int, default=defaults.n_pretrain, help="persons in pretrain")
    common.add_argument("--n-train", type=int, default=defaults.n_train, help="persons in train")
    common.add_argument("--n-test", type=int, default=defaults.n_test, help="persons in test")
    common.add_argument("--persons-per-org", type=int, default=defaults.persons_per_org)
    common.add_argument("--update-prob", type=float, default=defaults.update_prob)
    common.add_argument("--max-updates", type=int, default=defaults.max_updates)
    parser = argparse.ArgumentParser(prog="python -m experiments.world",
                                     description="The synthetic world of fictional persons and organisations.")
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export", parents=[common], help="write documents.jsonl and questions.jsonl")
    export.add_argument("--split", default="test", choices=SPLITS + (ALL,))
    export.add_argument("--out", required=True, help="directory to write")
    sub.add_parser("stats", parents=[common], help="print counts of documents and questions per split")
    return parser


def _stats(config: WorldConfig) -> None:
    start = time.perf_counter()
    world = build_world(config)
    docs, qs = documents(world), questions(world)
    print(f"built in {time.perf_counter() - start:.2f} s")
    for split in SPLITS:
        kinds = Counter(d.kind for d in docs if d.split == split)
        types = Counter(q.type for q in qs if q.split == split)
        words = [len(d.text.split()) for d in docs if d.split == split]
        mean = sum(words) / max(1, len(words))
        print(f"{split}: {sum(kinds.values())} documents {dict(kinds)}, mean {mean:.1f} words; "
              f"{sum(types.values())} questions {dict(types)}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = _config(args)
        if args.command == "stats":
            _stats(config)
            return 0
        counts = export_split(config, args.split, args.out)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {counts['documents']} documents and {counts['questions']} questions to {args.out}; "
          f"ingest with: memkit ingest {args.out}/documents.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
