"""``memkit ingest``: absorb files, directories, JSONL streams and stdin into the store."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from cli.common import err, handle_errors, load_engine, open_store, print_json, state


@handle_errors
def ingest(
    ctx: typer.Context,
    paths: Annotated[list[str], typer.Argument(
        help="Files, directories (text, markdown and .jsonl, recursively) or - for standard input.",
        show_default=False)],
    stream: Annotated[Optional[str], typer.Option(
        help="Name of the stream these documents belong to (positions continue across runs). "
             "Default for a .jsonl file: its name.")] = None,
    fmt: Annotated[str, typer.Option(
        "--format", help="auto (by extension), text (one document per file) or jsonl (one per line).")] = "auto",
    batch_size: Annotated[int, typer.Option(min=1, help="Documents encoded together.")] = 8,
    model: Annotated[Optional[str], typer.Option(
        help="Load the store's model from this directory instead (it must be the same model).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Add documents to the store. Duplicates (same text) are skipped; refused inputs are listed at the end
    and make the exit code 1, while every good document is kept."""
    from memkit.sources import iter_sources

    st = state(ctx)
    with open_store(st, write=True) as store:
        engine = load_engine(st, store, model)
        engine.batch_size = batch_size
        items = iter_sources(paths, stream=stream, fmt=fmt)
        columns = [SpinnerColumn(), TextColumn("ingesting"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[note]}"), TimeElapsedColumn()]
        with Progress(*columns, console=err, transient=True, disable=json_out) as bar:
            task = bar.add_task("ingest", total=None, note="")
            counts = {"added": 0, "duplicate": 0, "failed": 0}

            def progress(event: str, item) -> None:
                counts[event] += 1
                note = f"{counts['added']} added, {counts['duplicate']} duplicate, {counts['failed']} refused"
                bar.update(task, advance=1, note=note)

            report = engine.ingest(items, progress=progress)
    if json_out:
        print_json(report.to_dict())
    else:
        typer.echo(f"ingested {len(report.added)} document(s) ({report.memories} memories) in "
                   f"{report.seconds:.1f}s; {report.duplicates} duplicate(s) skipped; "
                   f"{len(report.failed)} input(s) refused")
        for problem in report.failed:
            err.print(f"refused: {problem}", markup=False)
    if report.failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(ingest)
