"""``memkit init``: create a store bound to one base model and one method."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cli.common import MODEL_HELP, err, fail, handle_errors, print_json, state


@handle_errors
def init(
    ctx: typer.Context,
    model: Annotated[Optional[str], typer.Option(
        help=f"Base LM: {MODEL_HELP}. Default: the packaged world LM.")] = None,
    method: Annotated[str, typer.Option(
        help="How documents are absorbed: closed_book, prompt, rag, finetune, adapter (generated adapters), "
             "slots (memory slots) or hybrid (adapters and slots together).")] = "rag",
    option: Annotated[Optional[list[str]], typer.Option(
        "--option", "-o", help="A method option KEY=VALUE (repeatable), e.g. -o chunk_tokens=64.")] = None,
    revision: Annotated[Optional[str], typer.Option(help="Hub revision (branch, tag or commit).")] = None,
    db_url: Annotated[Optional[str], typer.Option(
        help="SQLAlchemy database URL, e.g. postgresql+psycopg://user@host/db (default: SQLite inside the "
             "store). The database holds the documents' text.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Create a new store for MODEL and METHOD at --store, with one collection (--collection, default
    `default`); on an existing store, add the collection --collection to it."""
    from memkit.defaults import default_model
    from memkit.lm import FrozenLM
    from memkit.methods import canonical_name
    from memkit.methods.common import parse_options
    from memkit.service.collections import new_collection
    from storage import Store, check_db_url
    from storage.errors import StoreExistsError

    st = state(ctx)
    exists = (st.store / "store.json").exists()
    if exists:
        from storage.root import StoreRoot, check_collection_name

        if db_url is not None:
            fail(f"store {st.store} exists and keeps its database; --db-url is for a new store")
        check_collection_name(st.collection)
        with StoreRoot.open(st.store) as root:                 # before the model loads: a clash costs no wait
            if st.collection in [c.name for c in root.collections()]:
                raise StoreExistsError(st.store, f"a memkit store already exists at {st.store} with a collection "
                                                 f"{st.collection!r}; choose another --store, or add a collection "
                                                 f"with --collection NAME")
    if db_url is not None:
        check_db_url(db_url)  # before the model loads: a bad URL costs the user no wait
    name = canonical_name(method)
    model_id = model or default_model()
    if Path(model_id).expanduser().exists():
        model_id = str(Path(model_id).expanduser().resolve())
    with err.status(f"loading model {model_id}", spinner="dots"):
        lm = FrozenLM.load(model_id, revision=revision, device=st.device)
    spec = new_collection(lm, name, parse_options(option or []), model_id=model_id, revision=revision).spec
    if exists:
        from storage.root import StoreRoot

        with StoreRoot.open(st.store, write=True) as root:
            info = root.create_collection(st.collection, **spec).info
    else:
        with Store.create(st.store, db_url=db_url, collection=st.collection, **spec) as store:
            info = store.info
    result = {"store": str(st.store), "collection": info.name, "model": model_id, "method": name,
              "config": info.method_config, "key_dim": info.key_dim}
    if json_out:
        print_json(result)
    elif exists:
        typer.echo(f"added collection {info.name} to store {st.store} (model {model_id}, method {name})")
    else:
        where = "" if info.name == "default" else f", collection {info.name}"
        typer.echo(f"created store {st.store} (model {model_id}, method {name}{where})")


def register(app: typer.Typer) -> None:
    app.command()(init)
