"""``memkit stats``, ``memkit reindex`` and ``memkit doctor``: the store's numbers, repair and health."""

from __future__ import annotations

import platform
from typing import Annotated

import typer

from cli.common import handle_errors, open_store, out, print_json, state


def _print_pairs(data: dict) -> None:
    width = max(len(k) for k in data)
    for key, value in data.items():
        out.print(f"{key.ljust(width)}  {value}", markup=False)


@handle_errors
def stats(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Counts and sizes: documents, memories by kind, streams, bytes on disk, index size."""
    with open_store(state(ctx)) as store:
        data = store.stats()
    print_json(data) if json_out else _print_pairs(data)


@handle_errors
def reindex(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Rebuild the vector index from the database (the index is a cache of it)."""
    with open_store(state(ctx), write=True) as store:
        count = store.reindex()
    print_json({"vectors": count}) if json_out else typer.echo(f"rebuilt the index: {count} vectors")


def _environment() -> dict:
    import faiss
    import torch
    import transformers

    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if cuda else "not available",
        "transformers": transformers.__version__,
        "faiss": faiss.__version__,
        "faiss_gpus": faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0,
    }


@handle_errors
def doctor(
    ctx: typer.Context,
    skip_model: Annotated[bool, typer.Option("--skip-model", help="Do not load the store's model.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Check the environment (torch, CUDA, faiss build) and the store: model, blobs, index. Exit 1 on problems."""
    from memkit.errors import MemkitError
    from storage.errors import StoreError

    st = state(ctx)
    report: dict = {"environment": _environment(), "store": str(st.store), "problems": []}
    try:
        with open_store(st) as store:
            info = store.info
            report["model"] = info.model_id
            report["method"] = info.method
            report["documents"] = store.count_documents()
            report["problems"] += store.verify()
            if not skip_model:
                from memkit.lm import FrozenLM

                try:
                    lm = FrozenLM.load(info.model_id, revision=info.model_revision, device=st.device)
                    store.check_model(lm.name, lm.fingerprint)
                    report["model_check"] = f"ok ({lm.family}, {lm.num_layers} layers, on {lm.device})"
                except (MemkitError, StoreError) as exc:
                    report["problems"].append(f"model: {exc}")
    except StoreError as exc:
        report["problems"].append(f"store: {exc}")
    if json_out:
        print_json(report)
    else:
        _print_pairs(report["environment"])
        for key in ("store", "model", "method", "documents", "model_check"):
            if key in report:
                out.print(f"{key}: {report[key]}", markup=False)
        for problem in report["problems"]:
            out.print(f"problem: {problem}", markup=False)
        out.print("healthy" if not report["problems"] else f"{len(report['problems'])} problem(s)", markup=False)
    if report["problems"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(stats)
    app.command()(reindex)
    app.command()(doctor)
