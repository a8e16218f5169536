"""``memkit ls``, ``memkit show`` and ``memkit rm``: look at and remove documents."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from cli.common import handle_errors, open_store, out, print_json, state
from memkit.service.views import document_view


@handle_errors
def ls(
    ctx: typer.Context,
    stream: Annotated[Optional[str], typer.Option(help="Only documents of this stream.")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Show at most this many.")] = None,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many first.")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List the documents in the store, oldest first."""
    with open_store(state(ctx)) as store:
        rows = [document_view(d) for d in store.list_documents(limit=limit, offset=offset, stream=stream)]
    if json_out:
        print_json(rows)
        return
    if not rows:
        out.print("no documents", markup=False)
        return
    table = Table("id", "source", "stream", "pos", "chars", "memories", "added")
    table.columns[1].overflow = "fold"
    for r in rows:
        table.add_row(str(r["id"]), r["source"], r["stream"] or "", "" if r["position"] is None else str(r["position"]),
                      str(r["chars"]), str(r["memories"]), str(r["created_at"])[:16].replace("T", " "))
    out.print(table)


@handle_errors
def show(
    ctx: typer.Context,
    doc_id: Annotated[int, typer.Argument(help="Document id (see memkit ls).", show_default=False)],
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show one document: its metadata, its memories and its text."""
    with open_store(state(ctx)) as store:
        doc = store.get_document(doc_id)
        memories = store.memories(doc_id)
    data = document_view(doc) | {"text": doc.text, "memory_records": [
        {"id": m.id, "kind": m.kind, "span": list(m.span) if m.span else None, "bytes": m.nbytes} for m in memories]}
    if json_out:
        print_json(data)
        return
    for key in ("id", "source", "stream", "position", "external_id", "timestamp", "chars", "created_at"):
        if data[key] is not None:
            out.print(f"{key}: {data[key]}", markup=False)
    kinds = sorted({m.kind for m in memories})
    out.print(f"memories: {len(memories)} ({', '.join(kinds) or 'none'})", markup=False)
    out.print("", markup=False)
    out.print(doc.text, markup=False)


@handle_errors
def rm(
    ctx: typer.Context,
    doc_ids: Annotated[list[int], typer.Argument(help="Document ids to remove.", show_default=False)],
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Remove documents with their memories, blobs and index entries. Every id is checked first: if one is not
    in the store, nothing is removed."""
    with open_store(state(ctx), write=True) as store:
        removed = store.remove_documents(doc_ids)
    if json_out:
        print_json({"removed": removed})
    else:
        typer.echo(f"removed {len(removed)} document(s): {', '.join(map(str, removed))}")


def register(app: typer.Typer) -> None:
    app.command()(ls)
    app.command()(show)
    app.command()(rm)
