"""``memkit bench``: compare memory methods on a benchmark under the papers' protocols, with their costs.

Parses the options into a ``BenchConfig``, loads the benchmark and the model, runs every method with a progress
bar over methods x questions on stderr, prints a summary table on stdout, and writes ``--json`` / ``--report``.
Knows no maths: everything is in ``experiments.bench``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.common import MODEL_HELP, err, handle_errors, out, state

DEFAULT_METHODS = "closed,prompt,prompt:oracle,rag,finetune"
DEFAULT_CONTEXTS = "512,1024,2048,4096,8192"
SUMMARY = [  # (header, report column)
    ("method", "method"), ("protocol", "protocol"), ("docs", "docs"), ("ctx", "context"), ("qs", "questions"),
    ("EM", "EM"), ("F1", "F1"), ("p50ms", "p50 ms"), ("FLOPs/q", "FLOPs/q"), ("drop", "F1 drop")]


@handle_errors
def bench(
    ctx: typer.Context,
    benchmark: Annotated[str, typer.Argument(
        help="world (the synthetic world), english (memkit's own English set, packaged; --data optional) or a "
             "dataset read with --data: squad, streamingqa, archivalqa, msc, metaicl.", show_default=False)],
    methods: Annotated[str, typer.Option(
        help="Methods to compare, comma-separated; NAME:SETTING picks a setting (prompt:oracle hands the "
             "gold documents to the prompt instead of retrieving).")] = DEFAULT_METHODS,
    protocol: Annotated[str, typer.Option(
        help="stream, sweep, retention, all, or a comma-separated list.")] = "stream",
    n_docs: Annotated[Optional[int], typer.Option(min=1, help="Use the first N documents (default: all).")] = None,
    context_tokens: Annotated[str, typer.Option(help="Context lengths of the sweep.")] = DEFAULT_CONTEXTS,
    seed: Annotated[int, typer.Option(help="Seed of the methods and of the synthetic world.")] = 0,
    json_path: Annotated[Optional[Path], typer.Option(
        "--json", help="Write the results as JSON to this file (- for stdout, without the table).")] = None,
    report: Annotated[Optional[Path], typer.Option(
        help="Write a markdown report here and its PNG plots beside it.")] = None,
    data: Annotated[Optional[Path], typer.Option(help="The dataset's local file or directory.")] = None,
    model: Annotated[Optional[str], typer.Option(
        help=f"Model: {MODEL_HELP} (default: the packaged world LM).")] = None,
    split: Annotated[str, typer.Option(help="Split of the synthetic world.")] = "test",
    option: Annotated[Optional[list[str]], typer.Option(
        "--option", "-o", help="METHOD.OPTION=VALUE, repeatable (e.g. -o finetune.steps=4).")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Keep the first N questions of the dataset.")] = None,
    max_questions: Annotated[Optional[int], typer.Option(
        min=1, help="Most questions per step, a sample fixed by the seed (default: all).")] = None,
    checkpoints: Annotated[int, typer.Option(min=1, help="Points along the stream where questions are asked.")] = 1,
    retention_split: Annotated[float, typer.Option(
        help="Share of the documents ingested before retention's first round of questions.")] = 0.5,
    max_groups: Annotated[Optional[int], typer.Option(
        min=1, help="Most contexts per length in the sweep (default: all).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Questions generated together.")] = 8,
) -> None:
    """Benchmark memory methods: the same questions, the same seed, every method, in one run."""
    from experiments.bench import benchmarks
    from experiments.bench.config import PROTOCOLS, BenchConfig, parse_ints, parse_options
    from experiments.bench.report import to_json, write_json, write_report
    from experiments.bench.suite import build_plan, count_questions, run_benchmark
    from memkit.defaults import default_model
    from memkit.lm import FrozenLM

    protocols = list(PROTOCOLS) if protocol.strip() == "all" else [p.strip() for p in protocol.split(",") if p.strip()]
    cfg = BenchConfig(methods=[m.strip() for m in methods.split(",") if m.strip()], protocols=protocols,
                      n_docs=n_docs, context_tokens=parse_ints(context_tokens, "--context-tokens"), seed=seed,
                      retention_split=retention_split, checkpoints=checkpoints, max_groups=max_groups,
                      max_questions=max_questions,
                      batch_size=batch_size, method_options=parse_options(option or []))
    cfg.validate()
    model_path = model or default_model()
    with err.status(f"loading benchmark {benchmark}", spinner="dots"):
        bench_data = benchmarks.load(benchmark, data=data, split=split, seed=seed, limit=limit)
    with err.status(f"loading model {model_path}", spinner="dots"):
        lm = FrozenLM.load(model_path, device=state(ctx).device)
    steps = build_plan(bench_data, lm, cfg)
    total = count_questions(steps, cfg)
    if err.is_terminal:
        columns = [TextColumn("{task.fields[method]:<16}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
        with Progress(*columns, console=err, transient=True) as bar:
            task = bar.add_task("bench", total=total, method="")
            result = run_benchmark(bench_data, lm, cfg, steps=steps,
                                   on_answer=lambda n: bar.update(task, advance=n),
                                   on_method=lambda spec: bar.update(task, method=spec.label))
    else:
        lines = LineProgress(total)
        result = run_benchmark(bench_data, lm, cfg, steps=steps, on_answer=lines.advance, on_method=lines.method)
        lines.done()
    if json_path is not None and str(json_path) == "-":
        typer.echo(to_json(result), nl=False)
    else:
        _print_summary(result)
        if json_path is not None:
            err.print(f"wrote {write_json(result, json_path)}", markup=False)
    if report is not None:
        for path in write_report(result, report):
            err.print(f"wrote {path}", markup=False)


class LineProgress:
    """Progress for a log (stderr not a terminal): a line when a method starts and at most one a minute."""

    def __init__(self, total: int, every_s: float = 60.0):
        self.total, self.every_s = total, every_s
        self.count, self.label = 0, ""
        self.start = self.last = time.monotonic()

    def _line(self, what: str) -> None:
        err.print(f"[{time.monotonic() - self.start:6.0f}s] {what}: {self.count}/{self.total} answers",
                  markup=False, highlight=False)
        self.last = time.monotonic()

    def method(self, spec) -> None:
        self.label = spec.label
        self._line(f"{self.label} starts")

    def advance(self, n: int) -> None:
        self.count += n
        if time.monotonic() - self.last >= self.every_s:
            self._line(self.label)

    def done(self) -> None:
        self._line("done")


def _print_summary(result: dict) -> None:
    from experiments.bench.config import MethodSpec
    from experiments.bench.report import COLUMNS, cell, phase_of

    fields = {h: (f, fmt) for h, f, fmt in COLUMNS}
    rows = []
    for row in result["results"]:
        shown = dict(row, protocol=phase_of(row), method=MethodSpec(row["method"], row["setting"]).label)
        rows.append([cell(shown, *fields[name]) for _, name in SUMMARY])
    table = Table(title=f"memkit bench {result['benchmark']}", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False, padding=(0, 1))
    for i, (header, _) in enumerate(SUMMARY):
        widest = max([len(header)] + [len(r[i]) for r in rows])
        text = header in ("method", "protocol")
        table.add_column(header, justify="left" if text else "right", min_width=widest if text else None,
                         overflow="fold")
    for cells in rows:
        table.add_row(*cells)
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command()(bench)
