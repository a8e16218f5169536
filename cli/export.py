"""``memkit export-lora``: the merged adapter of some documents, written as a standard PEFT LoRA directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import err, handle_errors, load_engine, open_store, print_json, state


@handle_errors
def export_lora(
    ctx: typer.Context,
    doc_ids: Annotated[list[int], typer.Argument(help="Documents whose adapters are merged (see memkit ls).",
                                                 show_default=False)],
    out: Annotated[Path, typer.Option(help="Directory to write (adapter_config.json, adapter_model.safetensors).",
                                      show_default=False)],
    json_out: Annotated[bool, typer.Option("--json", help="Print what was written as JSON.")] = False,
) -> None:
    """Merge the adapters of DOC_IDS (states add, then normalise) and write them as a PEFT LoRA.

    Load it with peft.PeftModel.from_pretrained(base_model, OUT): it gives the logits memkit's own
    application gives. Only stores built with the adapter method hold adapters."""
    from memkit.errors import InputError
    from memkit.lora import LoraFactors
    from memkit.methods.base import Retrieved

    st = state(ctx)
    with open_store(st) as store:
        if store.info.method != "adapter":
            raise InputError(f"this store was built with method {store.info.method}; only adapter stores hold "
                             "adapters to export (memkit init --method adapter)")
        engine = load_engine(st, store)
        retrieved = []
        for doc_id in dict.fromkeys(doc_ids):
            doc = store.get_document(doc_id)
            for m in store.memories(doc_id):
                if m.kind == "adapter":
                    retrieved.append(Retrieved(m.id, doc_id, 1.0, m.kind, doc.source, None, "",
                                               store.load_payload(m.id)))
        delta = engine.method.merged_delta(retrieved)
        squeezed = type(delta)({n: (a[0], b[0]) for n, (a, b) in delta.factors.items()}, delta.scale)
        written = LoraFactors.from_delta(engine.lm, squeezed).export_peft(out)
    info = {"out": str(written), "documents": list(dict.fromkeys(doc_ids)), "modules": len(squeezed.factors),
            "rank": int(next(iter(squeezed.factors.values()))[0].shape[0]), "base_model": engine.lm.name}
    if json_out:
        print_json(info)
    else:
        err.print(f"wrote a rank-{info['rank']} LoRA on {info['modules']} modules of {info['base_model']} "
                  f"merged from {len(info['documents'])} document(s) to {written}", markup=False)


def register(app: typer.Typer) -> None:
    app.command("export-lora")(export_lora)
