"""The papers' evaluation protocols, as plans of ingest-then-ask steps that every method runs identically.

Owns: turning a ``Benchmark`` and a ``BenchConfig`` into ``Step`` s, running them for one method, and summing
each row's answers and costs into a result row.

* ``stream`` (MAC / CMT online adaptation): the first ``n_docs`` documents are ingested in order into one store;
  at each of ``checkpoints`` evenly spaced points every question whose gold documents are all ingested by then
  is asked (questions citing no document are asked too).
* ``sweep`` (GenerativeAdapter): for each context length L, the documents are packed in order into contexts of
  at most L tokens (a document longer than L is a context of its own); each context is a fresh store holding
  only its documents, asked the questions whose gold documents all lie in it. Contexts without a question are
  skipped; ``max_groups`` caps how many are evaluated. A method that prompts cuts its context at the model's
  window, as the papers do; the row's ``truncation_rate`` says how often.
* ``retention``: the first K = ``retention_split`` x N documents are ingested, their questions asked
  (``f1_before``); the other N - K documents are ingested into the same store and the same questions asked
  again (``f1_after``); both rows carry ``f1_drop`` = before - after.

Knows nothing of the CLI or of how rows are rendered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from experiments.bench.config import BenchConfig, MethodSpec
from experiments.bench.costs import answer_flops
from memkit.datasets.records import BenchQuestion, Benchmark
from memkit.documents import SourceDocument
from memkit.datasets.metrics import aggregate, percentile
from experiments.bench.runner import AnswerHook, MethodSession, QuestionResult
from memkit.errors import ConfigError


ROW_FIELDS = ("method", "setting", "protocol", "n_docs", "context_tokens", "em", "f1", "f1_by_type",
              "latency_ms_p50", "latency_ms_p95", "tokens_per_question", "flops_per_question", "peak_memory_mb",
              "bytes_per_doc")
"""The fields every result row starts with, in this order; rows then add ``n_questions``, ``em_by_type``,
``truncation_rate``, ``answer_flops_per_question``, ``encode_flops``, ``encode_seconds``, ``state_bytes``,
protocol fields (``phase``, ``n_groups``, ``mean_context_tokens``, ``f1_before``/``f1_after``/``f1_drop``)
and ``method_config`` (the method's full options, e.g. finetune's steps and lr)."""


@dataclass
class Step:
    """Ingest ``ingest`` (into a fresh store when ``fresh``), then ask ``ask``; answers count toward row ``row``."""

    row: str
    ingest: list[SourceDocument]
    ask: list[BenchQuestion]
    fresh: bool = False
    label: dict = field(default_factory=dict)   # the row's protocol, n_docs, context_tokens, phase...


def _covered(question: BenchQuestion, ids: set[str], allow_empty: bool) -> bool:
    return set(question.doc_ids) <= ids if question.doc_ids else allow_empty


def _documents(bench: Benchmark, cfg: BenchConfig) -> list[SourceDocument]:
    return bench.documents[: cfg.n_docs] if cfg.n_docs else list(bench.documents)


def stream_plan(bench: Benchmark, cfg: BenchConfig, count_tokens: Callable[[str], int]) -> list[Step]:
    docs = _documents(bench, cfg)
    k = min(cfg.checkpoints, len(docs))
    bounds = sorted({max(1, round(len(docs) * i / k)) for i in range(1, k + 1)})
    steps, done, tokens = [], 0, 0
    for bound in bounds:
        part = docs[done:bound]
        tokens += sum(count_tokens(d.text) for d in part)
        seen = {d.external_id for d in docs[:bound]}
        asked = [q for q in bench.questions if _covered(q, seen, allow_empty=True)]
        label = {"protocol": "stream", "n_docs": bound, "context_tokens": tokens}
        steps.append(Step(f"stream/{bound}", part, asked, fresh=not done, label=label))
        done = bound
    return steps


def sweep_plan(bench: Benchmark, cfg: BenchConfig, count_tokens: Callable[[str], int]) -> list[Step]:
    docs = _documents(bench, cfg)
    sizes = [count_tokens(d.text) for d in docs]
    steps = []
    for length in cfg.context_tokens:
        groups: list[list[int]] = [[]]
        used = 0
        for i, size in enumerate(sizes):
            if groups[-1] and used + size > length:
                groups.append([])
                used = 0
            groups[-1].append(i)
            used += size
        kept = []
        for group in groups:
            ids = {docs[i].external_id for i in group}
            asked = [q for q in bench.questions if _covered(q, ids, allow_empty=False)]
            if group and asked:
                kept.append((group, asked))
        kept = kept[: cfg.max_groups] if cfg.max_groups else kept
        mean = sum(sizes[i] for g, _ in kept for i in g) / max(1, len(kept))
        label = {"protocol": "sweep", "n_docs": sum(len(g) for g, _ in kept), "context_tokens": length,
                 "n_groups": len(kept), "mean_context_tokens": round(mean, 1)}
        for group, asked in kept:
            steps.append(Step(f"sweep/{length}", [docs[i] for i in group], asked, fresh=True, label=label))
    return steps


def retention_plan(bench: Benchmark, cfg: BenchConfig, count_tokens: Callable[[str], int]) -> list[Step]:
    docs = _documents(bench, cfg)
    if len(docs) < 2:
        raise ConfigError("the retention protocol needs at least 2 documents (--n-docs)")
    k = min(len(docs) - 1, max(1, round(len(docs) * cfg.retention_split)))
    first = {d.external_id for d in docs[:k]}
    asked = [q for q in bench.questions if _covered(q, first, allow_empty=False)]
    before = sum(count_tokens(d.text) for d in docs[:k])
    after = before + sum(count_tokens(d.text) for d in docs[k:])
    return [Step("retention/before", docs[:k], asked, fresh=True,
                 label={"protocol": "retention", "phase": "before", "n_docs": k, "context_tokens": before}),
            Step("retention/after", docs[k:], asked,
                 label={"protocol": "retention", "phase": "after", "n_docs": len(docs), "context_tokens": after})]


PLANS = {"stream": stream_plan, "sweep": sweep_plan, "retention": retention_plan}


def plan(bench: Benchmark, cfg: BenchConfig, count_tokens: Callable[[str], int]) -> list[Step]:
    """Every step of every protocol of ``cfg``, in order; each protocol starts with a fresh store."""
    return [step for name in cfg.protocols for step in PLANS[name](bench, cfg, count_tokens)]


@dataclass
class _Row:
    label: dict
    results: list[QuestionResult] = field(default_factory=list)
    sessions: dict[int, dict] = field(default_factory=dict)   # session number -> its latest cost snapshot


def run_steps(steps: list[Step], spec: MethodSpec, lm, cfg: BenchConfig, *, params: int,
              on_answer: AnswerHook | None = None) -> list[dict]:
    """Run ``steps`` with one method and return one summary row per distinct ``Step.row``, in order."""
    rows: dict[str, _Row] = {}
    session: MethodSession | None = None
    number = 0
    try:
        for step in steps:
            if step.fresh or session is None:
                if session is not None:
                    session.close()
                session = MethodSession(lm, spec.name, spec.options, setting=spec.setting, seed=cfg.seed,
                                        batch_size=cfg.batch_size, params=params)
                number += 1
            session.ingest(step.ingest)
            row = rows.setdefault(step.row, _Row(dict(step.label)))
            row.results.extend(session.ask(step.ask, on_answer))
            row.sessions[number] = session.snapshot()
            row.label.setdefault("method_config", session.method.config_dict())
    finally:
        if session is not None:
            session.close()
    out = [summarise(spec, row.label, row.results, list(row.sessions.values()), params) for row in rows.values()]
    return _add_retention(out)


def summarise(spec: MethodSpec, label: dict, results: list[QuestionResult], snapshots: list[dict],
              params: int) -> dict:
    """One result row: scores x100, latency percentiles and the costs of ``costs``' formulas."""
    n = len(results)
    scores = aggregate([{"em": r.em, "f1": r.f1, "type": r.type} for r in results])
    latency = [r.latency_ms for r in results]
    tokens = sum(r.tokens_processed for r in results)
    encode = sum(s["encode_flops"] for s in snapshots)
    documents = sum(s["documents"] for s in snapshots)
    extras = {k: v for k, v in label.items() if k not in ("protocol", "n_docs", "context_tokens", "method_config")}
    return {
        "method": spec.name,
        "setting": spec.setting,
        "protocol": label["protocol"],
        "n_docs": label["n_docs"],
        "context_tokens": label["context_tokens"],
        "em": round(scores["em"], 4),
        "f1": round(scores["f1"], 4),
        "f1_by_type": {t: round(v["f1"], 4) for t, v in scores["by_type"].items()},
        "latency_ms_p50": round(percentile(latency, 50), 3) if n else None,
        "latency_ms_p95": round(percentile(latency, 95), 3) if n else None,
        "tokens_per_question": round(tokens / n, 2) if n else 0.0,
        "flops_per_question": (answer_flops(params, tokens) + encode) / n if n else 0.0,
        "peak_memory_mb": round(max((s["peak_memory_mb"] for s in snapshots), default=0.0), 1),
        "bytes_per_doc": round(sum(s["stored_bytes"] for s in snapshots) / documents, 1) if documents else 0.0,
        "n_questions": n,
        "em_by_type": {t: round(v["em"], 4) for t, v in scores["by_type"].items()},
        "truncation_rate": round(sum(r.truncated for r in results) / n, 4) if n else 0.0,
        "answer_flops_per_question": answer_flops(params, tokens) / n if n else 0.0,
        "encode_flops": encode,
        "encode_seconds": round(sum(s["encode_seconds"] for s in snapshots), 3),
        "state_bytes": sum(s["state_bytes"] for s in snapshots),
        **extras,
        "method_config": label.get("method_config", {}),
    }


def _add_retention(rows: list[dict]) -> list[dict]:
    """Give both retention rows ``f1_before``, ``f1_after`` and ``f1_drop``."""
    before = next((r for r in rows if r["protocol"] == "retention" and r.get("phase") == "before"), None)
    after = next((r for r in rows if r["protocol"] == "retention" and r.get("phase") == "after"), None)
    if before is not None and after is not None:
        for row in (before, after):
            row.update(f1_before=before["f1"], f1_after=after["f1"], f1_drop=round(before["f1"] - after["f1"], 4))
    return rows
