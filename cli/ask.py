"""``memkit ask``: answer a question from what the store holds, with sources."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from cli.common import ApiKeyOpt, RemoteCollectionOpt, handle_errors, load_engine, open_store, out, print_json, state
from memkit.service.views import answer_view, documents_of


@handle_errors
def ask(
    ctx: typer.Context,
    question: Annotated[str, typer.Argument(help="The question.", show_default=False)],
    top_k: Annotated[Optional[int], typer.Option(
        min=1, help="Memories to use (default: the method's own setting).")] = None,
    as_of: Annotated[Optional[str], typer.Option(
        help="Answer only from documents timestamped at or before this time (ISO 8601, e.g. 2024-05-01 or "
             "2024-05-01T12:30:00Z; no offset means UTC). Documents without a timestamp are left out.",
        show_default=False)] = None,
    model: Annotated[Optional[str], typer.Option(
        help="Load the store's model from this directory or .gguf file instead (it must be the same "
             "model).")] = None,
    server: Annotated[Optional[str], typer.Option(
        envvar="MEMKIT_SERVER", show_default=False,
        help="Ask a running `memkit serve` at this URL (also MEMKIT_SERVER) instead of loading the model here; "
             "--store and --model are then not used.")] = None,
    collection: RemoteCollectionOpt = None,
    api_key: ApiKeyOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the answer, sources and timings as JSON.")] = False,
) -> None:
    """Answer QUESTION with the store's model and method, and say where the answer came from."""
    from memkit.engine import as_of_time

    st = state(ctx)
    when = as_of_time(as_of) if as_of is not None else None
    if server is not None:
        from cli.remote import Remote

        with Remote(server, api_key) as remote:
            data = remote.ask(collection or st.collection, question, top_k, when)
        if json_out:
            print_json(data)
        else:
            show(data)
        return
    with open_store(st) as store:
        engine = load_engine(st, store, model)
        answer = engine.ask(question, top_k=top_k, as_of=when)
        view = answer_view(answer, documents_of(store, [answer]))
    if json_out:
        print_json(view)
        return
    show(view)


def show(data: dict) -> None:
    """An answer as ``service.views.answer_view`` gives it (locally or from a server): the text, its sources, the
    time taken."""
    info = data.get("info") or {}
    out.print(data["answer"] or "(empty answer)", markup=False)
    if info.get("truncated"):
        out.print("note: the context was cut to fit the model's window", markup=False)
    if not data["sources"]:
        if info.get("sources_note"):
            out.print(f"sources: none ({info['sources_note']})", markup=False)
        elif data["method"] == "closed_book":
            out.print(f"sources: none ({data['method']} answers without documents)", markup=False)
        else:
            out.print("sources: none found", markup=False)
    else:
        out.print("sources:", markup=False)
        for n, src in enumerate(data["sources"], 1):
            span = f" chars {src['span'][0]}-{src['span'][1]}" if src.get("span") else ""
            # merged sources come first (a hybrid lists the memories it aggregated after them)
            weight = f"  weight {src['weight']:.2f}" if src.get("weight") is not None else ""
            external = f"  id {src['external_id']}" if src.get("external_id") else ""
            out.print(f"  [{n}] doc {src['document_id']}{external}  score {src['score']:.3f}{weight}  "
                      f"{src['source']}{span}", markup=False)
            out.print(f"      {src['snippet']}", markup=False)
    out.print(f"({data.get('timings_ms', {}).get('total', 0):.0f} ms)", markup=False, style="dim")


def register(app: typer.Typer) -> None:
    app.command()(ask)
