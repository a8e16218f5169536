"""The experiments' own command lines for training recipes (``python -m experiments.world.recipes``,
``python -m experiments.bench.train_throughput``): every field of a training config an argparse option.

Owns: ``add_config_options`` and ``recipe_main``. For people running the experiments; users train through
``memkit train``, memkit's one front door.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import Callable


def add_config_options(parser: argparse.ArgumentParser, config_cls) -> None:
    """Add an option for every field of the dataclass ``config_cls``."""
    for f in fields(config_cls):
        if f.name == "inputs":          # set by the recipe from what it reads, never given
            continue
        kind = type(f.default)
        if kind is bool:
            parser.add_argument("--" + f.name.replace("_", "-"), action=argparse.BooleanOptionalAction,
                                default=f.default)
        else:
            parser.add_argument("--" + f.name.replace("_", "-"), type=kind, default=f.default)


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
