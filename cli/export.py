"""``memkit export-lora``: the merged adapter of some documents, written as a standard PEFT LoRA directory.

``--out`` is checked before anything is loaded: it may be a new path, an empty directory, or a previous
export (a directory holding ``memkit_lora.json``, whose export files are replaced); an existing file or a
directory holding other files is refused, so a user's files are never overwritten."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from cli.common import err, fail, handle_errors, load_engine, open_store, print_json, state

EXPORT_MARKER = "memkit_lora.json"   # written by LoraFactors.export_peft beside the peft files


def check_out(out: Path) -> None:
    """Refuse (one line, exit 2) an ``--out`` that is a file, a non-empty directory that is not a previous
    export, under a file, or not writable."""
    if out.is_dir():
        if any(out.iterdir()) and not (out / EXPORT_MARKER).is_file():
            fail(f"--out {out} is a directory holding other files; name a new or empty directory "
                 f"(only a previous export-lora output, which holds {EXPORT_MARKER}, is replaced)")
        target = out
    elif out.exists() or out.is_symlink():
        fail(f"--out {out} is a file; name a new or empty directory to write the LoRA into")
    else:
        target = next((p for p in out.parents if p.exists() or p.is_symlink()), Path("."))
        if not target.is_dir():
            fail(f"--out {out} cannot be created: {target} is a file, not a directory")
    if not os.access(target, os.W_OK | os.X_OK):
        fail(f"--out {out} cannot be written: no permission to write in {target}")


@handle_errors
def export_lora(
    ctx: typer.Context,
    doc_ids: Annotated[list[int], typer.Argument(help="Documents whose adapters are merged (see memkit ls).",
                                                 show_default=False)],
    out: Annotated[Path, typer.Option(
        help="Directory to write (adapter_config.json, adapter_model.safetensors): a new or empty one, or a "
             "previous export to replace; an existing file or a directory holding other files is refused.",
        show_default=False)],
    json_out: Annotated[bool, typer.Option("--json", help="Print what was written as JSON.")] = False,
) -> None:
    """Merge the adapters of DOC_IDS (states add, then normalise) and write them as a PEFT LoRA.

    Load it with peft.PeftModel.from_pretrained(base_model, OUT): it gives the logits memkit's own
    application gives. Only stores built with the adapter method hold adapters."""
    from memkit.errors import InputError
    from memkit.lora import LoraFactors
    from memkit.methods.base import Retrieved

    check_out(out)   # before the store and the model: a bad --out costs the user no wait
    st = state(ctx)
    with open_store(st) as store:
        if store.info.method != "adapter":
            raise InputError(f"this store was built with method {store.info.method}; only adapter stores hold "
                             "adapters to export (memkit init --method adapter)")
        retrieved = []
        for doc_id in dict.fromkeys(doc_ids):   # unknown documents are refused before the model loads
            doc = store.get_document(doc_id)
            for m in store.memories(doc_id):
                if m.kind == "adapter":
                    retrieved.append(Retrieved(m.id, doc_id, 1.0, m.kind, doc.source, None, "",
                                               store.load_payload(m.id)))
        engine = load_engine(st, store)
        delta = engine.method.merged_delta(retrieved)
        squeezed = type(delta)({n: (a[0], b[0]) for n, (a, b) in delta.factors.items()}, delta.scale)
        try:
            written = LoraFactors.from_delta(engine.lm, squeezed).export_peft(out)
        except OSError as exc:
            fail(f"could not write the LoRA to {out}: {exc.strerror or exc}", 1)
    info = {"out": str(written), "documents": list(dict.fromkeys(doc_ids)), "modules": len(squeezed.factors),
            "rank": int(next(iter(squeezed.factors.values()))[0].shape[0]), "base_model": engine.lm.name}
    if json_out:
        print_json(info)
    else:
        err.print(f"wrote a rank-{info['rank']} LoRA on {info['modules']} modules of {info['base_model']} "
                  f"merged from {len(info['documents'])} document(s) to {written}", markup=False)


def register(app: typer.Typer) -> None:
    app.command("export-lora")(export_lora)
