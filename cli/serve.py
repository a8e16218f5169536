"""``memkit serve``: the store as a long-running HTTP service (``server/``), on uvicorn.

Owns: the command's options, building ``ServerConfig`` and running uvicorn so that SIGTERM or Ctrl-C drains the
requests in flight, stops the ingest job after its current chunk (marked interrupted) and closes the store.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from cli.common import Terminated, err, handle_errors, state


@handle_errors
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(
        help="Address to bind. Anything but loopback (127.0.0.1, ::1, localhost) needs an API key.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0: any free one, printed).")] = 8000,
    api_key: Annotated[Optional[str], typer.Option(
        envvar="MEMKIT_API_KEY", show_default=False,
        help="Bearer token every route but /healthz asks for (also MEMKIT_API_KEY; at least 16 characters). "
             "Required off loopback.")] = None,
    allow_path: Annotated[Optional[list[Path]], typer.Option(
        help="A directory (or file) a POST /collections may name as its model or in an option, e.g. a trained "
             "generator or a .gguf model (repeatable). Without it only hub ids, reference names (memkit models), "
             "the packaged models and the models the store already uses are allowed.")] = None,
    max_body_bytes: Annotated[int, typer.Option(
        min=1024, help="Largest request body (an ingest's documents); larger is refused with 413.")] = 64 * 1024 * 1024,
    max_question_chars: Annotated[int, typer.Option(min=1, help="Longest question.")] = 4096,
    max_queued_bytes: Annotated[Optional[int], typer.Option(
        min=1, show_default="4 x --max-body-bytes",
        help="Most bytes of documents waiting for the writer; past it an ingest gets 503.")] = None,
    max_batch: Annotated[int, typer.Option(min=1, help="Most questions answered together.")] = 32,
    batch_wait_ms: Annotated[float, typer.Option(
        min=0, help="How long a batch smaller than the recent ones waits for more questions (a lone client's "
                    "question never waits).")] = 10.0,
    threads: Annotated[Optional[int], typer.Option(
        min=1, show_default="torch's default",
        help="CPU threads for the model (torch.set_num_threads); fewer than the cores leaves room for clients "
             "and the event loop on a small machine.")] = None,
    ingest_batch: Annotated[int, typer.Option(
        min=1, help="Documents encoded together; asks are answered between these chunks.")] = 8,
    cors_origin: Annotated[Optional[list[str]], typer.Option(
        help="Allow browser requests from this origin (repeatable; CORS is off without it).")] = None,
    log_level: Annotated[str, typer.Option(
        help="uvicorn's log level: critical, error, warning, info, debug.")] = "info",
) -> None:
    """Serve the store (--store; made, empty, if it does not exist) over HTTP: collections, documents, ingest
    jobs, questions with sources, and an OpenAI-compatible /v1/chat/completions where `model` names a
    collection. The API is described at http://HOST:PORT/docs. Stop it with Ctrl-C or SIGTERM: requests in
    flight finish, a running ingest job stops after its current chunk and is marked interrupted."""
    import uvicorn

    from server.app import create_app
    from server.config import ServerConfig

    st = state(ctx)
    config = ServerConfig(store=st.store, host=host, port=port, api_key=api_key or None, device=st.device,
                          max_body_bytes=max_body_bytes, max_question_chars=max_question_chars,
                          max_queued_bytes=max_queued_bytes,
                          max_batch=max_batch, batch_wait_ms=batch_wait_ms, ingest_batch=ingest_batch,
                          cors_origins=list(cors_origin or []), allow_paths=list(allow_path or []))
    logging.getLogger("memkit.server").setLevel(logging.INFO)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    app = create_app(config)
    runtime = app.state.runtime
    with err.status(f"opening {config.store} and loading its models", spinner="dots"):
        runtime.open()

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):   # the first signal: stop taking ingest work at once, then drain
            runtime.stopping.set()
            super().handle_exit(sig, frame)

        async def startup(self, sockets=None):
            await super().startup(sockets)
            for server in self.servers:
                for sock in server.sockets:
                    where = sock.getsockname()
                    err.print(f"memkit serving {config.store} at http://{_url_host(where[0])}:{where[1]} "
                              f"(pid {os.getpid()}; API at /docs)", markup=False)

    uv = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=30,
                        server_header=False, access_log=log_level == "debug")
    server = Server(uv)
    try:
        server.run()
    except (Terminated, KeyboardInterrupt):   # uvicorn raises the signal again after its drain: a clean stop
        pass
    if not server.started:
        raise typer.Exit(1)
    if runtime.closed:
        err.print("memkit serve stopped; the store is closed", markup=False)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def register(app: typer.Typer) -> None:
    app.command()(serve)
