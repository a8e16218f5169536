"""``memkit ingest``: absorb files, directories, JSONL streams and stdin into the store."""

from __future__ import annotations

import time
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from cli.common import ApiKeyOpt, RemoteCollectionOpt, err, handle_errors, load_engine, open_store, print_json, state

LOG_EVERY_S = 60.0
"""Off a terminal (a log), progress is a line this often."""


def _size(value: str) -> int:
    """A size flag's value -> bytes; a bad one is a usage error naming the flag."""
    from memkit.documents import parse_size

    try:
        size = parse_size(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if size < 1:
        raise typer.BadParameter("must be at least 1 byte")
    return size


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
        help="Load the store's model from this directory or .gguf file instead (it must be the same "
             "model).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    max_doc_bytes: Annotated[int, typer.Option(
        parser=_size, metavar="SIZE",
        help="Largest document (its text, as UTF-8); a larger file, stdin or JSONL text is refused, never "
             "truncated. Memory while one is ingested grows with its size (about 3 GB for 8 MiB with rag).")] = "8MiB",
    max_line_bytes: Annotated[Optional[int], typer.Option(
        parser=_size, metavar="SIZE", show_default="4 x --max-doc-bytes",
        help="Longest JSONL line; a longer one is refused and skipped, and reading goes on with the next "
             "line.")] = None,
    max_input_bytes: Annotated[int, typer.Option(
        parser=_size, metavar="SIZE",
        help="Most bytes read in this ingest, over all inputs; past it reading stops and what was read before "
             "is kept.")] = "4GiB",
    allow_special: Annotated[bool, typer.Option(
        "--allow-special",
        help="Read FIFOs, devices and sockets named as inputs (refused by default: they may block forever or "
             "never end; directories always skip them). Standard input (-) is always read.")] = False,
    server: Annotated[Optional[str], typer.Option(
        envvar="MEMKIT_SERVER", show_default=False,
        help="Send the documents to a running `memkit serve` at this URL (also MEMKIT_SERVER), which holds the "
             "store's writer lock; --store, --model and --batch-size are then not used.")] = None,
    collection: RemoteCollectionOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Add documents to the store. Duplicates (same text) are skipped; refused inputs are listed at the end
    and make the exit code 1, while every good document is kept.

    Input is read as a stream within the --max-* limits; each refusal names the flag that raises its limit.
    A SIZE is bytes or a number with a unit: 512K, 64M or 64MiB, 2G (powers of 1024), 64MB (powers of 1000)."""
    from memkit.documents import ReadLimits
    from memkit.sources import iter_sources

    limits = ReadLimits(max_doc_bytes=max_doc_bytes, max_line_bytes=max_line_bytes,
                        max_input_bytes=max_input_bytes, allow_special=allow_special)
    st = state(ctx)
    if server is not None:
        return _remote(server, collection or st.collection, api_key,
                       iter_sources(paths, stream=stream, fmt=fmt, limits=limits), json_out)
    with open_store(st, write=True) as store:
        engine = load_engine(st, store, model)
        engine.batch_size = batch_size
        items = iter_sources(paths, stream=stream, fmt=fmt, limits=limits)
        counts = {"added": 0, "duplicate": 0, "failed": 0}

        def note() -> str:
            return f"{counts['added']} added, {counts['duplicate']} duplicate, {counts['failed']} refused"

        if err.is_terminal and not json_out:
            columns = [SpinnerColumn(), TextColumn("ingesting"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[note]}"), TimeElapsedColumn()]
            with Progress(*columns, console=err, transient=True) as bar:
                task = bar.add_task("ingest", total=None, note="")

                def progress(event: str, item) -> None:
                    counts[event] += 1
                    bar.update(task, advance=1, note=note())

                report = engine.ingest(items, progress=progress, limits=limits)
        else:  # a log: a line at most once a minute, nothing for a short ingest
            start, last = time.monotonic(), [time.monotonic()]

            def progress(event: str, item) -> None:
                counts[event] += 1
                if time.monotonic() - last[0] >= LOG_EVERY_S:
                    last[0] = time.monotonic()
                    err.print(f"ingesting: {note()} ({last[0] - start:.0f}s)", markup=False)

            report = engine.ingest(items, progress=progress, limits=limits)
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


def _remote(server: str, collection: str, api_key: str | None, items, json_out: bool) -> None:
    """``ingest`` through a server: documents read here within the limits, sent in batches, each a job followed
    to its end; the summary and exit code as a local ingest's."""
    from cli.remote import Remote, batches
    from memkit.errors import InputError

    refused: list[str] = []
    totals = {"added": 0, "duplicates": 0, "memories": 0, "document_ids": []}
    start = time.monotonic()

    def documents():
        for item in items:
            if isinstance(item, InputError):
                refused.append(str(item))
            else:
                yield item

    with Remote(server, api_key) as remote:
        for stream, body in batches(documents()):
            job = remote.ingest(collection, body, stream)
            if job.get("status") != "done":
                raise RemoteJobError(job, totals)
            for key in ("added", "duplicates", "memories"):
                totals[key] += job.get(key, 0)
            totals["document_ids"] += job.get("document_ids", [])
            refused += job.get("refusals", [])
            if err.is_terminal and not json_out:
                err.print(f"ingesting: {totals['added']} added, {totals['duplicates']} duplicate, "
                          f"{len(refused)} refused ({time.monotonic() - start:.0f}s)", markup=False)
    seconds = time.monotonic() - start
    if json_out:
        print_json({**totals, "failed": refused, "seconds": round(seconds, 3)})
    else:
        typer.echo(f"ingested {totals['added']} document(s) ({totals['memories']} memories) in {seconds:.1f}s "
                   f"through {server}; {totals['duplicates']} duplicate(s) skipped; {len(refused)} input(s) refused")
        for problem in refused:
            err.print(f"refused: {problem}", markup=False)
    if refused:
        raise typer.Exit(1)


def RemoteJobError(job: dict, totals: dict):
    from cli.remote import RemoteError

    return RemoteError(f"ingest job {job.get('id')} ended {job.get('status')}: {job.get('error', 'no reason given')} "
                       f"({totals['added'] + job.get('added', 0)} document(s) added before it)")


def register(app: typer.Typer) -> None:
    app.command()(ingest)
