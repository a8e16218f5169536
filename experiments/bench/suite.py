"""A whole benchmark run: every method of a config through every protocol, on the same plan and seed.

Owns: ``run_benchmark`` (plan once, run the plan for each method, gather the rows into the report dictionary
``{"benchmark", "config", "results"}`` that ``experiments.bench.report`` renders) and ``count_questions``
(the progress total). Knows nothing of the CLI or of rendering.
"""

from __future__ import annotations

import hashlib

from typing import Callable

from experiments.bench.config import BenchConfig, MethodSpec
from experiments.bench.costs import non_embedding_params
from memkit.datasets.records import Benchmark
from experiments.bench.protocols import Step, plan, run_steps
from experiments.bench.runner import AnswerHook
from memkit.errors import ConfigError

MethodHook = Callable[[MethodSpec], None]


def build_plan(benchmark: Benchmark, lm, cfg: BenchConfig) -> list[Step]:
    cfg.validate()
    if not benchmark.questions:
        raise ConfigError(f"benchmark {benchmark.name} has no questions")
    steps = plan(benchmark, cfg, lm.count_tokens)
    if cfg.max_questions:
        for step in steps:
            step.ask = sample_questions(step.ask, cfg.max_questions, cfg.seed)
    return steps


def sample_questions(questions: list, n: int, seed: int) -> list:
    """At most ``n`` of ``questions``, in their order, chosen by a seeded hash of each question's id."""
    if len(questions) <= n:
        return list(questions)
    rank = sorted(questions, key=lambda q: hashlib.sha256(f"{seed}:{q.id}".encode()).hexdigest())
    chosen = {id(q) for q in rank[:n]}
    return [q for q in questions if id(q) in chosen]


def count_questions(steps: list[Step], cfg: BenchConfig) -> int:
    """Answers the run will generate: questions of every step, for every method."""
    return sum(len(s.ask) for s in steps) * len(cfg.specs())


def run_benchmark(benchmark: Benchmark, lm, cfg: BenchConfig, *, steps: list[Step] | None = None,
                  on_answer: AnswerHook | None = None, on_method: MethodHook | None = None) -> dict:
    """Run every method of ``cfg`` over the same plan; the report dictionary of the run."""
    steps = steps if steps is not None else build_plan(benchmark, lm, cfg)
    params = non_embedding_params(lm.model)
    results = []
    for spec in cfg.specs():
        if on_method is not None:
            on_method(spec)
        results.extend(run_steps(steps, spec, lm, cfg, params=params, on_answer=on_answer))
    config = cfg.to_dict()
    config.update(model=lm.name, model_revision=lm.revision, model_fingerprint=lm.fingerprint,
                  non_embedding_params=params, device=str(lm.device), dtype=str(lm.dtype).replace("torch.", ""),
                  n_documents=len(benchmark.documents), n_questions=len(benchmark.questions),
                  benchmark_meta=dict(benchmark.meta))
    return {"benchmark": benchmark.name, "config": config, "results": results}
