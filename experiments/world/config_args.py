"""Command-line options of a training recipe from its config dataclass: one ``--field-name`` per field, typed by
its default (booleans as ``--x/--no-x``)."""

from __future__ import annotations

import argparse
from dataclasses import fields


def add_config_options(parser: argparse.ArgumentParser, config_cls) -> None:
    """Add an option for every field of the dataclass ``config_cls``."""
    for f in fields(config_cls):
        kind = type(f.default)
        if kind is bool:
            parser.add_argument("--" + f.name.replace("_", "-"), action=argparse.BooleanOptionalAction,
                                default=f.default)
        else:
            parser.add_argument("--" + f.name.replace("_", "-"), type=kind, default=f.default)
