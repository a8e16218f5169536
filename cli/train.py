"""``memkit train``: build and train memkit's own models. ``base`` builds the world LM from scratch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cli.common import handle_errors, print_json, state

train_app = typer.Typer(help="Train memkit's models: the world LM (base) and the adapter generator (adapter).",
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
    from memkit.defaults import default_model
    from memkit.lm import FrozenLM

    cfg = AdapterTrainConfig(minutes=minutes, max_steps=max_steps, batch_size=batch_size, lr=lr,
                             state_rank=state_rank, svd_rank=svd_rank, chunk_tokens=chunk_tokens, targets=targets,
                             norm=norm, key_source=key_source, center=center, base_rank=base_rank,
                             mean_state=mean_state, w_contrast=w_contrast, contrast_margin=contrast_margin,
                             pretrain_steps=pretrain_steps, warmup_steps=warmup_steps,
                             init_from=str(init_from or ""), eval_every=eval_every, seed=seed)
    cfg.validate()
    lm = FrozenLM.load(model or default_model(), device=state(ctx).device)
    summary = run(lm, cfg, out, log=lambda msg: typer.echo(msg, err=True))
    if install:
        summary["installed"] = str(install_generator(out))
    print_json(summary) if json_out else typer.echo(f"generator saved to {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
