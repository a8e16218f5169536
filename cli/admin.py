"""``memkit stats``, ``memkit reindex`` and ``memkit doctor``: the store's numbers, repair and health."""

from __future__ import annotations

import platform
from typing import Annotated

import typer

from cli.common import fail, handle_errors, open_store, out, print_json, state


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
    index: Annotated[str | None, typer.Option(
        "--index", help="Switch the collection's vector index: 'auto' (exact while its vectors fit in 128 MiB, "
                        "then an HNSW graph), 'flat' (always exact) or 'hnsw' (always approximate). Recorded in "
                        "the store; kept when omitted.")] = None,
    m: Annotated[int | None, typer.Option(
        "--hnsw-m", help="HNSW links per vector (default 32; more: better recall, more memory).")] = None,
    ef_construction: Annotated[int | None, typer.Option(
        "--ef-construction", help="HNSW candidates kept while linking a vector (default 80).")] = None,
    ef_search: Annotated[int | None, typer.Option(
        "--ef-search", help="HNSW candidates kept while searching (default 96; more: better recall, slower).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Rebuild the vector index from the database (the index is a cache of it), optionally as another kind,
    and delete files that interrupted writes left behind (blobs no memory references, temp files)."""
    from storage.index import IndexSpec

    with open_store(state(ctx), write=True) as store:
        spec = None
        changes = {k: v for k, v in (("kind", index), ("m", m), ("ef_construction", ef_construction),
                                      ("ef_search", ef_search)) if v is not None}
        if changes:
            try:
                spec = IndexSpec.from_dict({**store.index_info()["spec"], **changes})
            except ValueError as e:
                fail(f"--index: {e}")
        count = store.reindex(spec)
        info = store.index_info()
        removed = store.remove_orphans()
    if json_out:
        print_json({"vectors": count, "index": info, "removed": removed})
    else:
        params = ", ".join(f"{k} {v}" for k, v in info["params"].items())
        typer.echo(f"rebuilt the index: {count} vectors, {info['kind'] or 'none yet'}"
                   + (f" ({params})" if params else "") + f"; asked for: {info['spec']['kind']}"
                   + (f"; deleted {len(removed)} leftover file(s)" if removed else ""))


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
    repair: Annotated[bool, typer.Option(
        "--repair", help="Fix what can be fixed without the documents' sources: delete leftover files of "
                         "interrupted writes and rebuild the index file when it is stale or damaged (takes the "
                         "writer lock).")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Check the environment (torch, CUDA, faiss build) and the store: its database, every blob against its
    checksum, leftover files, the index file against the database, the model. Exit 0 healthy, 1 problems
    found, 3 the store cannot be opened. A store being written by another process is checked for what that
    work cannot disturb."""
    from memkit.errors import MemkitError
    from storage.errors import StoreError

    st = state(ctx)
    report: dict = {"environment": _environment(), "store": str(st.store), "problems": [], "notes": []}
    try:
        with open_store(st, write=repair) as store:
            info = store.info
            report["model"] = info.model_id
            report["method"] = info.method
            report["documents"] = store.count_documents()
            if repair:
                report["repaired"] = store.repair()
            health = store.verify()
            report["problems"] += health.problems
            report["notes"] += health.notes
            if not skip_model:
                from memkit.lm import FrozenLM

                try:
                    lm = FrozenLM.load(info.model_id, revision=info.model_revision, device=st.device)
                    store.check_model(lm.name, lm.fingerprint)
                    report["model_check"] = f"ok ({lm.family}, {lm.num_layers} layers, on {lm.device})"
                except (MemkitError, StoreError) as exc:
                    report["problems"].append(f"model: {exc}")
    except StoreError as exc:
        report["error"] = str(exc)
    if json_out:
        print_json(report)
    else:
        _print_pairs(report["environment"])
        for key in ("store", "model", "method", "documents", "model_check"):
            if key in report:
                out.print(f"{key}: {report[key]}", markup=False)
        for line in report.get("repaired", []):
            out.print(f"repaired: {line}", markup=False)
        for note in report["notes"]:
            out.print(f"note: {note}", markup=False)
        for problem in report["problems"]:
            out.print(f"problem: {problem}", markup=False)
        if "error" not in report:
            out.print("healthy" if not report["problems"] else f"{len(report['problems'])} problem(s)", markup=False)
    if "error" in report:
        if json_out:
            raise typer.Exit(3)
        fail(report["error"], 3)
    if report["problems"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(stats)
    app.command()(reindex)
    app.command()(doctor)
