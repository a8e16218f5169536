"""What the training recipes share: command-line options from a config dataclass (one ``--field-name`` per
field, typed by its default, booleans as ``--x/--no-x``), saving a trained model with its config and log,
copying it into the package, and the recipes' ``main``."""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import asdict, fields
from pathlib import Path
from typing import Callable


def add_config_options(parser: argparse.ArgumentParser, config_cls) -> None:
    """Add an option for every field of the dataclass ``config_cls``."""
    for f in fields(config_cls):
        kind = type(f.default)
        if kind is bool:
            parser.add_argument("--" + f.name.replace("_", "-"), action=argparse.BooleanOptionalAction,
                                default=f.default)
        else:
            parser.add_argument("--" + f.name.replace("_", "-"), type=kind, default=f.default)


def save_trained(model, out: Path, cfg, summary: dict, report, log: Callable[[str], None]) -> None:
    """``model.save`` with the training config and summary, and ``training_log.json`` beside it."""
    model.save(out, extra={"training": asdict(cfg), "summary": summary})
    (out / "training_log.json").write_text(json.dumps({"summary": summary, **report.to_dict()}, indent=2) + "\n")
    log(f"saved to {out} ({summary['seconds']:.0f}s in all)")


def install_copy(out: Path, dest: Path) -> Path:
    """Replace ``dest`` (a packaged model's directory) with a copy of ``out``."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(out, dest)
    return dest


def recipe_main(argv: list[str] | None, *, prog: str, description: str, config_cls, default_out: str,
                run: Callable, install: Callable[[Path], Path]) -> None:
    """Parse ``--model --out --device --install`` and the config's options, load the LM, ``run`` the recipe
    and, with ``--install``, package the result."""
    from memkit.defaults import default_model
    from memkit.lm import FrozenLM

    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--model", default=None, help="base model (default: the packaged world LM)")
    parser.add_argument("--out", type=Path, default=Path(default_out))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--install", action="store_true")
    add_config_options(parser, config_cls)
    args = vars(parser.parse_args(argv))
    model, out, device, do_install = args.pop("model"), args.pop("out"), args.pop("device"), args.pop("install")
    lm = FrozenLM.load(model or default_model(), device=device)
    run(lm, config_cls(**args), out, log=lambda m: print(m, flush=True))
    if do_install:
        print(f"installed: {install(out)}")
