"""What every command shares: the global options, opening the store, loading the engine, printing.

Owns: the ``State`` the root callback fills (store path, device), ``handle_errors`` which maps library errors
to one line on stderr and an exit code (never a traceback for an ordinary mistake), ``Terminated`` and the
SIGTERM handler that raises it (so a terminated command unwinds like an interrupted one: its ``with`` blocks
close the store, saving the index and releasing the writer lock), and loading the model a command's store
needs (the wiring itself is ``service.collections``'). Knows no maths.
"""

from __future__ import annotations

import functools
import json
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from memkit.errors import MemkitError
from storage.errors import StoreError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


@dataclass
class State:
    store: Path
    device: str = "auto"
    collection: str = "default"


MODEL_HELP = ("a reference model's short name (gemma-3-270m, smollm2-135m-instruct: `memkit models`), a .gguf file "
              "(converted once, then cached in MEMKIT_CACHE_DIR, default ~/.cache/memkit), a local directory or a "
              "Hugging Face hub id")
"""How every ``--model`` option describes what it accepts."""

# What `ask` and `ingest` share when they talk to a running `memkit serve` (--server URL).
RemoteCollectionOpt = Annotated[Optional[str], typer.Option(
    "--collection", help="With --server: the collection to use (default: the global --collection).")]
ApiKeyOpt = Annotated[Optional[str], typer.Option(
    "--api-key", envvar="MEMKIT_API_KEY", show_default=False, help="With --server: its API key (also MEMKIT_API_KEY).")]


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, State) else State(store=Path(".memkit"))


INTERRUPTED = "interrupted; what was already written is kept, whole"
TERMINATED = "terminated; what was already written is kept, whole"
EXIT_INTERRUPTED = 130     # 128 + SIGINT
EXIT_TERMINATED = 143      # 128 + SIGTERM


class Terminated(BaseException):
    """Raised in the main thread when the process gets SIGTERM. A BaseException, like KeyboardInterrupt, so that
    no ``except Exception`` swallows it, while ``with`` blocks and ``finally`` clauses still run."""


def _on_sigterm(signum, frame) -> None:
    # One is enough: a second SIGTERM while the store closes is ignored, so the close is not cut short
    # (SIGKILL still ends the process at once).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated()


def install_signal_handlers() -> None:
    """Make SIGTERM raise ``Terminated`` in the main thread (call once, from the console-script entry point)."""
    signal.signal(signal.SIGTERM, _on_sigterm)


def fail(message: str, code: int = 2) -> None:
    err.print(f"error: {message}", markup=False)
    raise typer.Exit(code)


def handle_errors(fn):
    """Run a command; a memkit or store error becomes 'error: ...' on stderr and its exit code; Ctrl-C (SIGINT)
    and SIGTERM become one line and exit 130 or 143, after the command's ``with`` blocks have closed."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (MemkitError, StoreError) as exc:
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            err.print(INTERRUPTED, markup=False)
            raise typer.Exit(EXIT_INTERRUPTED)
        except Terminated:
            err.print(TERMINATED, markup=False)
            raise typer.Exit(EXIT_TERMINATED)

    return wrapper


def print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def open_store(st: State, *, write: bool = False):
    from storage import Store

    return Store.open(st.store, write=write, collection=st.collection)


def load_engine(st: State, store, model: str | None = None):
    """The frozen LM the store was built with (or a copy of it at ``model``), its method, and the store."""
    from memkit.lm import FrozenLM
    from memkit.service.collections import engine_for

    info = store.info
    with err.status(f"loading model {model or info.model_id}", spinner="dots"):
        lm = FrozenLM.load(model or info.model_id, revision=info.model_revision, device=st.device)
    return engine_for(store, lm)
