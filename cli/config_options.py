"""Command-line options made from a config dataclass: one source of truth for each flag.

Owns: ``field_docs`` (a dataclass field's docstring, the string literal under it, read from the class source
along its bases) and ``config_parameters`` (one typer option per field: ``--field-name``, its type, its default,
its docstring as the help; booleans as ``--name/--no-name``). A command built from them takes the config's
values as they are and leaves every check to the config's ``validate``. Knows no maths and no config in
particular.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import typing
from typing import Annotated

import typer


def field_docs(cls) -> dict[str, str]:
    """Each field's docstring (one line, whitespace joined) for ``cls`` and its dataclass bases; a subclass's
    wins."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0].body
        for node, after in zip(body, body[1:] + [None]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                    and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def config_parameters(cls, *, skip: typing.Iterable[str] = ()) -> list[inspect.Parameter]:
    """Keyword parameters, one per field of the dataclass ``cls`` except ``skip``, as typer options."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    skipped = set(skip)
    params = []
    for f in dataclasses.fields(cls):
        if f.name in skipped:
            continue
        kind = hints[f.name]
        if kind not in (bool, int, float, str):
            raise TypeError(f"{cls.__name__}.{f.name}: a {kind} field has no command-line option")
        if f.name not in docs:
            raise TypeError(f"{cls.__name__}.{f.name} has no docstring to be its --help")
        option = typer.Option(help=docs[f.name], show_default=not (kind is str and f.default == ""))
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                                        annotation=Annotated[kind, option]))
    return params


def command(name: str, doc: str, parameters: list[inspect.Parameter], run: typing.Callable[..., None]):
    """A function typer reads as a command ``name`` with ``parameters`` and the help ``doc``, calling
    ``run(**values)``."""

    def fn(**values):
        return run(**values)

    fn.__name__ = name
    fn.__doc__ = doc
    fn.__signature__ = inspect.Signature(parameters)
    return fn
