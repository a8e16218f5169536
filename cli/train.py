"""``memkit train``: build and train memkit's own models. ``base`` builds the world LM from scratch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cli.common import handle_errors, print_json, state

train_app = typer.Typer(help="Train memkit's models: the world LM (base), the adapter generator (adapter) and the "
                             "memory-slot model (slots).",
                        no_args_is_help=True)


@train_app.command("base")
@handle_errors
def base(
    out: Annotated[Path, typer.Option(help="Where to save the model.")] = Path("build/world-lm"),
    minutes: Annotated[float, typer.Option(
        help="Wall-clock training budget; the schedule is planned from the measured speed, so a slower machine "
             "gets fewer steps (the packaged model: 40 minutes, 3263 steps on 2 CPU cores).")] = 40.0,
    max_steps: Annotated[int, typer.Option(help="Stop after this many steps (0: the budget decides).")] = 0,
    seed: Annotated[int, typer.Option(help="Seeds the model, the data order and the reading worlds.")] = 0,
    install: Annotated[bool, typer.Option(help="Make the result memkit's packaged default model.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Pretrain the world LM on the synthetic world (tokenizer, model, reading and closed-book QA)."""
    from experiments.world.build_lm import Recipe, install_model, train

    recipe = Recipe(seed=seed, minutes=minutes, max_steps=max_steps)
    summary = train(recipe, out, log=lambda msg: typer.echo(msg, err=True))
    if install:
        summary["installed"] = str(install_model(out))
    print_json(summary) if json_out else typer.echo(f"world LM saved to {out}")


@train_app.command("adapter")
@handle_errors
def adapter(
    ctx: typer.Context,
    model: Annotated[Optional[str], typer.Option(
        help="Base model hub id or directory (default: the packaged world LM).")] = None,
    out: Annotated[Path, typer.Option(help="Where to save the generator.")] = Path("build/adapter-generator"),
    minutes: Annotated[float, typer.Option(help="Wall-clock training budget.")] = 20.0,
    max_steps: Annotated[int, typer.Option(help="Stop after this many steps (0: the budget decides).")] = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="Documents per step.")] = 16,
    lr: Annotated[float, typer.Option(help="Peak AdamW learning rate.")] = 2e-3,
    state_rank: Annotated[int, typer.Option(min=1, help="R: state size (R x R per target module).")] = 64,
    svd_rank: Annotated[int, typer.Option(min=1, help="r: rank of the applied delta.")] = 16,
    chunk_tokens: Annotated[int, typer.Option(min=8, help="Tokens per chunk when reading a document.")] = 128,
    norm: Annotated[str, typer.Option(
        help="How a state becomes a delta: svd (rank r, singular values set to 1) or frobenius (the state over its "
             "Frobenius norm, rank R).")] = "svd",
    key_source: Annotated[str, typer.Option(
        help="Where a context token's key comes from: hidden (the hidden state entering the layer) or input (the "
             "target module's own input, the space a question's query lives in).")] = "hidden",
    center: Annotated[bool, typer.Option(help="Centre each chunk's hidden states before the projections.")] = False,
    mean_state: Annotated[bool, typer.Option(
        help="Subtract a per-token mean state, calibrated on training documents, from every state.")] = True,
    base_rank: Annotated[int, typer.Option(
        min=0, help="Rank of a document-independent LoRA learnt beside the generator and added to every delta.")] = 8,
    targets: Annotated[str, typer.Option(help="attn_out or mlp_out.")] = "attn_out",
    w_contrast: Annotated[float, typer.Option(
        min=0, help="Weight of the contrast hinge: the answer loss with another document's adapter must exceed "
                    "the loss with the question's own by --contrast-margin nats (0: off).")] = 1.0,
    contrast_margin: Annotated[float, typer.Option(help="Margin of the contrast hinge, in nats.")] = 1.0,
    pretrain_steps: Annotated[int, typer.Option(
        min=0, help="Self-supervised steps first (reconstruction and completion of the documents' text, no "
                    "questions), counted within the budget.")] = 0,
    warmup_steps: Annotated[int, typer.Option(min=0, help="Steps of linear learning-rate warm-up.")] = 50,
    init_from: Annotated[Optional[Path], typer.Option(
        help="Go on training this saved generator (its architecture options replace the ones given here).")] = None,
    eval_every: Annotated[int, typer.Option(min=1, help="Steps between probes on held-out questions.")] = 200,
    seed: Annotated[int, typer.Option(help="Seeds the generator and the training worlds.")] = 0,
    install: Annotated[bool, typer.Option(help="Package the result as the world LM's generator.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Train the adapter generator on the world's training entities (the frozen LM never changes).

    Optional self-supervised pretraining (--pretrain-steps), then QA fine-tuning: the document reaches the LM
    only through its adapter, the loss is on the answers, with reconstruction, completion and contrast losses
    beside it (memkit/adapters/train.py). The defaults are the recipe of the packaged generator's first stage;
    docs/adapters.md gives the commands that built it."""
    from experiments.world.train_adapter import install as install_generator
    from experiments.world.train_adapter import run
    from memkit.adapters.train import AdapterTrainConfig

    cfg = AdapterTrainConfig(minutes=minutes, max_steps=max_steps, batch_size=batch_size, lr=lr,
                             state_rank=state_rank, svd_rank=svd_rank, chunk_tokens=chunk_tokens, targets=targets,
                             norm=norm, key_source=key_source, center=center, base_rank=base_rank,
                             mean_state=mean_state, w_contrast=w_contrast, contrast_margin=contrast_margin,
                             pretrain_steps=pretrain_steps, warmup_steps=warmup_steps,
                             init_from=str(init_from or ""), eval_every=eval_every, seed=seed)
    _train(ctx, model, cfg, run, install_generator if install else None, out, json_out, "generator")


@train_app.command("slots")
@handle_errors
def slots(
    ctx: typer.Context,
    model: Annotated[Optional[str], typer.Option(
        help="Base model hub id or directory (default: the packaged world LM).")] = None,
    out: Annotated[Path, typer.Option(help="Where to save the slot model.")] = Path("build/slot-model"),
    minutes: Annotated[float, typer.Option(help="Wall-clock training budget.")] = 20.0,
    max_steps: Annotated[int, typer.Option(help="Stop after this many steps (0: the budget decides).")] = 0,
    batch_size: Annotated[int, typer.Option(
        min=2, help="Items per step; their documents are the bank each question is matched against.")] = 16,
    lr: Annotated[float, typer.Option(help="Peak AdamW learning rate.")] = 1e-3,
    slots_per_doc: Annotated[int, typer.Option(
        "--slots", min=1, help="m: memory vectors per document.")] = 8,
    mem_dim: Annotated[int, typer.Option(min=1, help="Size of a memory vector.")] = 256,
    prefix_len: Annotated[int, typer.Option(min=1, help="Prefix positions the LM reads.")] = 8,
    objective: Annotated[str, typer.Option(
        help="memory-aware (answer loss plus each document's LM loss read through its own memory) or qa "
             "(answer loss only, as MAC).")] = "memory-aware",
    matching: Annotated[bool, typer.Option(
        help="Train the keys to find their documents (self-matching) and weigh memories by their scores; "
             "--no-matching: every memory weighs the same, as MAC.")] = True,
    aggregation: Annotated[str, typer.Option(
        help="What a question aggregates while training: topk (its --top-k best matches, its own documents "
             "among them) or all (the whole batch, as MAC).")] = "topk",
    top_k: Annotated[int, typer.Option(min=1, help="Memories aggregated with --aggregation topk.")] = 4,
    w_lm: Annotated[float, typer.Option(min=0, help="Weight of the memory-aware LM loss.")] = 0.3,
    w_match: Annotated[float, typer.Option(min=0, help="Weight of the self-matching loss.")] = 1.0,
    w_contrast: Annotated[float, typer.Option(
        min=0, help="Weight of a contrast hinge: the answer loss through another question's memories must exceed "
                    "the loss through the question's own by --contrast-margin nats (0: off).")] = 0.0,
    contrast_margin: Annotated[float, typer.Option(help="Margin of the contrast hinge, in nats.")] = 1.0,
    with_adapter: Annotated[str, typer.Option(
        help="Train the hybrid method's slot model: answer losses read the adapter of each question's own "
             "documents too, made by this generator directory ('packaged': the world LM's).")] = "",
    warmup_steps: Annotated[int, typer.Option(min=0, help="Steps of linear learning-rate warm-up.")] = 50,
    init_from: Annotated[Optional[Path], typer.Option(
        help="Go on training this saved slot model (its architecture replaces the options given here).")] = None,
    eval_every: Annotated[int, typer.Option(min=1, help="Steps between probes on held-out questions.")] = 200,
    seed: Annotated[int, typer.Option(help="Seeds the model and the training worlds.")] = 0,
    install: Annotated[bool, typer.Option(
        help="Package the result as the world LM's slot model (the hybrid's, if trained --with-adapter).")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Train the memory-slot model on the world's training entities (the frozen LM never changes).

    Documents become memory vectors; questions are matched to their documents' keys, aggregate the best
    memories into a prefix, and the LM answers reading only that prefix (memkit/slots/train.py). The
    objective and matching switches give the ablations of docs/benchmarks.md."""
    from experiments.world.train_slots import install as install_slots
    from experiments.world.train_slots import run
    from memkit.slots.train import SlotTrainConfig

    cfg = SlotTrainConfig(minutes=minutes, max_steps=max_steps, batch_size=batch_size, lr=lr, slots=slots_per_doc,
                          mem_dim=mem_dim, prefix_len=prefix_len, objective=objective, matching=matching,
                          aggregation=aggregation, top_k=top_k, w_lm=w_lm, w_match=w_match,
                          w_contrast=w_contrast, contrast_margin=contrast_margin, with_adapter=with_adapter,
                          warmup_steps=warmup_steps, init_from=str(init_from or ""), eval_every=eval_every, seed=seed)
    _train(ctx, model, cfg, run, install_slots if install else None, out, json_out, "slot model")


def _train(ctx: typer.Context, model: str | None, cfg, run, install, out: Path, json_out: bool, what: str) -> None:
    """Check ``cfg``, load the base model, ``run`` the recipe, ``install`` the result if asked, report."""
    from memkit.defaults import default_model
    from memkit.lm import FrozenLM

    cfg.validate()
    lm = FrozenLM.load(model or default_model(), device=state(ctx).device)
    summary = run(lm, cfg, out, log=lambda msg: typer.echo(msg, err=True))
    if install is not None:
        summary["installed"] = str(install(out))
    print_json(summary) if json_out else typer.echo(f"{what} saved to {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
