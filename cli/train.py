"""``memkit train``: build and train memkit's own models. ``base`` builds the world LM from scratch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import handle_errors, print_json

train_app = typer.Typer(help="Train memkit's models: the world LM (base); adapters and slots come next.",
                        no_args_is_help=True)


@train_app.command("base")
@handle_errors
def base(
    out: Annotated[Path, typer.Option(help="Where to save the model.")] = Path("build/world-lm"),
    minutes: Annotated[float, typer.Option(help="Wall-clock training budget.")] = 50.0,
    max_steps: Annotated[int, typer.Option(help="Stop after this many steps (0: the budget decides).")] = 0,
    seed: Annotated[int, typer.Option(help="Seeds the model, the data order and the reading worlds.")] = 0,
    install: Annotated[bool, typer.Option(help="Make the result memkit's packaged default model.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Pretrain the world LM on the synthetic world (tokenizer, model, reading and closed-book QA)."""
    from experiments.world.build_lm import Recipe, install_model, train

    recipe = Recipe(seed=seed, minutes=minutes, max_steps=max_steps)
    summary = train(recipe, out, log=lambda msg: typer.echo(msg, err=True))
    if install:
        summary["installed"] = str(install_model(out))
    print_json(summary) if json_out else typer.echo(f"world LM saved to {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
