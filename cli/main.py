"""The ``memkit`` command: the typer app, its global options, and the command groups it is made of.

Owns: the root callback (``--store``, ``--device``) and registration of the commands defined one group per
module. ``main()`` is the console-script entry point.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli import admin, ask, bench, docs, export, ingest, init, train
from cli.common import State

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
) -> None:
    ctx.obj = State(store=store, device=device)


for module in (init, ingest, ask, docs, export, admin, bench, train):
    module.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
