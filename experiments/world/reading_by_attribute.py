"""Reading F1 per attribute: single-fact questions on test entities, each with its whole gold document.

Owns: the per-attribute breakdown behind docs/world-lm.md (it shows, for instance, whether a model tells the
birth city from the home city, the two values of one type in a biography). A diagnostic for the world LM; the
benchmark numbers come from ``memkit bench world``.

    python -m experiments.world.reading_by_attribute MODEL_DIR [--n 400] [--seed 3]
"""

from __future__ import annotations

import argparse
import random
from collections import defaultdict

from memkit.datasets.metrics import f1
from experiments.world.entities import WorldConfig, build_world
from experiments.world.questions import questions
from experiments.world.render import documents
from memkit.prompts import STOP, qa_prompt


def reading_by_attribute(lm, n: int = 400, seed: int = 3, world_seed: int = 0) -> dict[str, tuple[int, float]]:
    """``{attribute: (questions, mean F1 in percent)}`` plus ``"all"``, on ``n`` questions drawn with ``seed``."""
    world = build_world(WorldConfig(seed=world_seed))
    docs = {d.id: d.text for d in documents(world, "test")}
    pool = [q for q in questions(world, "test", 1) if q.type == "single"]
    chosen = random.Random(seed).sample(pool, min(n, len(pool)))
    prompts = [qa_prompt(q.question, [docs[i] for i in q.doc_ids]) for q in chosen]
    preds = lm.generate(prompts, max_new_tokens=12, stop=STOP, batch_size=16)
    scores: dict[str, list[float]] = defaultdict(list)
    for q, pred in zip(chosen, preds):
        score = 100 * f1(pred, q.answers)
        scores[q.attribute].append(score)
        scores["all"].append(score)
    return {k: (len(v), sum(v) / len(v)) for k, v in sorted(scores.items())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.world.reading_by_attribute",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("model", help="model directory or hub id")
    parser.add_argument("--n", type=int, default=400, help="questions drawn (default 400)")
    parser.add_argument("--seed", type=int, default=3, help="seed of the draw (default 3)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    from memkit.lm import FrozenLM

    lm = FrozenLM.load(args.model, device=args.device)
    for name, (count, score) in reading_by_attribute(lm, args.n, args.seed).items():
        print(f"{name:14s} {count:4d} questions  F1 {score:5.1f}")


if __name__ == "__main__":
    main()
