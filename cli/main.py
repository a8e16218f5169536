"""The ``memkit`` command: the typer app, its global options, and the command groups it is made of.

Owns: the root callback (``--store``, ``--device``) and registration of the commands defined one group per
module. ``main()`` is the console-script entry point; it makes SIGTERM close a command as cleanly as Ctrl-C.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli import admin, ask, bench, docs, export, ingest, init, models, serve, train
from cli.common import EXIT_TERMINATED, TERMINATED, State, Terminated, err, install_signal_handlers

app = typer.Typer(
    name="memkit",
    help="Continual knowledge memory for frozen language models: ingest documents, ask questions, "
         "get answers with their sources.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def root(
    ctx: typer.Context,
    store: Annotated[Path, typer.Option(
        "--store", envvar="MEMKIT_STORE", help="Store directory (also MEMKIT_STORE).")] = Path(".memkit"),
    device: Annotated[str, typer.Option(
        help="Where the model runs: auto (CUDA when present), cpu, cuda, cuda:N.")] = "auto",
    collection: Annotated[str, typer.Option(
        "--collection", envvar="MEMKIT_COLLECTION",
        help="The store's collection to use (also MEMKIT_COLLECTION). `memkit init` makes `default`, or adds "
             "another to an existing store; `memkit serve` serves them all.")] = "default",
) -> None:
    ctx.obj = State(store=store, device=device, collection=collection)


for module in (init, ingest, ask, docs, export, admin, bench, train, serve, models):
    module.register(app)


class _Lowercase(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def log_to_stderr() -> None:
    """The library's own warnings (a damaged index file answered around, a blob left in place) as one
    ``warning: ...`` line each on stderr, in the command's voice, and the ``info: ...`` lines of a GGUF file's
    one-time conversion; other libraries' logging is left alone."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Lowercase())
    for name in ("memkit", "storage", "experiments"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
    logging.getLogger("memkit.gguf").setLevel(logging.INFO)  # a GGUF file's one-time conversion takes a minute


def main() -> None:
    install_signal_handlers()
    log_to_stderr()
    try:
        app()
    except Terminated:  # outside a command (a command maps it itself, after its store has closed)
        err.print(TERMINATED, markup=False)
        sys.exit(EXIT_TERMINATED)


if __name__ == "__main__":
    main()
