"""``memkit train``: build and train memkit's own models. ``base`` builds the world LM from scratch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from cli.common import MODEL_HELP, handle_errors, print_json, state

train_app = typer.Typer(help="Train memkit's models: the world LM (base), and for any causal LM on any data the "
                             "adapter generator (adapter) and the memory-slot model (slots).",
                        no_args_is_help=True)

# Options the adapter and slots commands share: where the data comes from.
DataOpt = Annotated[Optional[list[str]], typer.Option(
    "--data", help="Training data, repeatable (several mix, each with an equal share): squad:PATH, streamingqa:PATH, "
                   "archivalqa:PATH, msc:PATH, metaicl:PATH, jsonl:PATH (generic: one {\"context\": ..., \"qa\": "
                   "[{\"question\": ..., \"answer\": ...}]} a line; docs/datasets.md), world or world:SEED. "
                   "Default: world, for the packaged world LM only.", show_default=False)]
EvalOpt = Annotated[Optional[list[str]], typer.Option(
    "--eval-data", help="Held-out data the probe asks (specs as --data); training items sharing a document with it "
                        "are dropped. Default: --eval-fraction of each dataset's documents.", show_default=False)]
EvalFractionOpt = Annotated[float, typer.Option(
    help="Fraction of each --data dataset's documents held out for the probe when no --eval-data is given (split "
         "by document: nothing evaluated is trained on).")]
EvalMaxOpt = Annotated[int, typer.Option(min=1, help="Most held-out items the probe asks (spread over them).")]
CorpusOpt = Annotated[Optional[list[str]], typer.Option(
    "--corpus", help="Plain text for the self-supervised steps (files, directories, JSONL with \"text\"); "
                     "repeatable.", show_default=False)]
MaxQuestionsOpt = Annotated[int, typer.Option(min=1, help="Most questions one training item asks of its documents.")]
# Options the adapter and slots commands share: how the loop runs and where the model comes from.
PromptFormatOpt = Annotated[str, typer.Option(
    help="How questions and answers are laid out: plain (Question: ... Answer: ...), fewshot (plain after two worked "
         "examples; small pretrained models read best with it) or chat (the tokenizer's chat template, for instruct "
         "models). Saved with the model; its method answers the same way.")]
ResumeOpt = Annotated[Optional[Path], typer.Option(
    help="Go on from a checkpoint: a run's OUT/checkpoint directory (its latest checkpoint) or one checkpoint in "
         "it. The other options must be the run's (only the budget and how often it reports may change); with "
         "--max-steps the result is bit-identical to a run that never stopped (on CPU).", show_default=False)]
CheckpointEveryOpt = Annotated[int, typer.Option(
    min=0, help="Steps between checkpoints (model, optimizer, schedule, random state) in OUT/checkpoint; a crash "
                "loses at most this many steps (0: none).")]
GradAccumOpt = Annotated[int, typer.Option(
    min=1, help="Micro-batches per step per process (gradient accumulation): the same step in less memory; "
                "--batch-size must be a multiple of it times --num-processes.")]
PrecisionOpt = Annotated[str, typer.Option(
    help="fp32, or bf16: the losses computed under bfloat16 autocast (the trained weights and optimizer stay "
         "float32).")]
GradCheckpointingOpt = Annotated[bool, typer.Option(
    help="Recompute the frozen LM's layer activations in the backward pass instead of keeping them: less memory, "
         "about one more forward pass of time.")]
NumProcessesOpt = Annotated[int, typer.Option(
    min=1, help="Train data-parallel in this many processes (one per GPU, or gloo on CPUs) through accelerate "
                "launch; the same result as one process with --grad-accum multiplied by it. For several machines "
                "run accelerate launch -m cli.main train ... on each.")]
DtypeOpt = Annotated[str, typer.Option(help="The frozen LM's dtype: auto, float32, bfloat16 or float16.")]
DeviceMapOpt = Annotated[Optional[str], typer.Option(
    help="Spread a model larger than one device over the GPUs (and the CPU) with this from_pretrained "
         "device_map, e.g. auto; default: the whole model on --device.", show_default=False)]


@dataclass
class LoopChoice:
    """The loop and loading options of a training command (see their --help)."""

    prompt_format: str
    resume: Path | None
    checkpoint_every: int
    grad_accum: int
    precision: str
    grad_checkpointing: bool
    num_processes: int
    dtype: str
    device_map: str | None

    def apply(self, cfg) -> None:
        """Set the loop's options on the training config ``cfg``."""
        cfg.prompt_format = self.prompt_format
        cfg.resume = str(self.resume or "")
        cfg.checkpoint_every = self.checkpoint_every
        cfg.grad_accum = self.grad_accum
        cfg.precision = self.precision
        cfg.grad_checkpointing = self.grad_checkpointing


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
        help=f"Base model: {MODEL_HELP} (default: the packaged world LM).")] = None,
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
    seed: Annotated[int, typer.Option(help="Seeds the generator, the data order and the held-out split.")] = 0,
    data: DataOpt = None,
    eval_data: EvalOpt = None,
    eval_fraction: EvalFractionOpt = 0.1,
    eval_max: EvalMaxOpt = 64,
    corpus: CorpusOpt = None,
    max_questions: MaxQuestionsOpt = 4,
    prompt_format: PromptFormatOpt = "plain",
    resume: ResumeOpt = None,
    checkpoint_every: CheckpointEveryOpt = 100,
    grad_accum: GradAccumOpt = 1,
    precision: PrecisionOpt = "fp32",
    grad_checkpointing: GradCheckpointingOpt = False,
    num_processes: NumProcessesOpt = 1,
    dtype: DtypeOpt = "auto",
    device_map: DeviceMapOpt = None,
    install: Annotated[bool, typer.Option(
        help="Package the result as the packaged world LM's generator (refused for another base model).")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Train an adapter generator for any causal LM on any QA data (the frozen LM never changes).

    Optional self-supervised steps first (--pretrain-steps; they read --corpus, or the data's documents), then QA
    fine-tuning: the documents reach the LM only through their adapter, the loss is on the answers, with
    reconstruction, completion and contrast losses beside it (memkit/adapters/train.py). A probe on held-out
    items (--eval-data, or --eval-fraction of the documents) reports F1 before, during and after. The defaults
    are the recipe of the packaged world generator's first stage; docs/adapters.md gives its commands."""
    from experiments.training.adapter import run
    from experiments.world.recipes import install_adapter
    from memkit.adapters.train import AdapterTrainConfig

    cfg = AdapterTrainConfig(minutes=minutes, max_steps=max_steps, batch_size=batch_size, lr=lr,
                             state_rank=state_rank, svd_rank=svd_rank, chunk_tokens=chunk_tokens, targets=targets,
                             norm=norm, key_source=key_source, center=center, base_rank=base_rank,
                             mean_state=mean_state, w_contrast=w_contrast, contrast_margin=contrast_margin,
                             pretrain_steps=pretrain_steps, warmup_steps=warmup_steps,
                             init_from=str(init_from or ""), eval_every=eval_every, seed=seed)
    sources = DataChoice(data, eval_data, eval_fraction, eval_max, corpus, max_questions)
    loop = LoopChoice(prompt_format, resume, checkpoint_every, grad_accum, precision, grad_checkpointing,
                      num_processes, dtype, device_map)
    _train(ctx, model, cfg, sources, loop, run, install_adapter if install else None, out, json_out, "generator")


@train_app.command("slots")
@handle_errors
def slots(
    ctx: typer.Context,
    model: Annotated[Optional[str], typer.Option(
        help=f"Base model: {MODEL_HELP} (default: the packaged world LM).")] = None,
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
    adapter_chunk_tokens: Annotated[int, typer.Option(
        min=8, help="Tokens per chunk when --with-adapter's generator reads a document (as its --chunk-tokens).")] = 128,
    pretrain_steps: Annotated[int, typer.Option(
        min=0, help="Self-supervised steps first (each --corpus document, or the data's documents, read through "
                    "its own memory: its LM loss alone, no questions), counted within the budget.")] = 0,
    max_tokens: Annotated[int, typer.Option(
        min=1, help="Most tokens read into one group of --slots vectors; a longer document is read in windows of "
                    "this size, one group each, never cut (capped by the model's context).")] = 256,
    warmup_steps: Annotated[int, typer.Option(min=0, help="Steps of linear learning-rate warm-up.")] = 50,
    init_from: Annotated[Optional[Path], typer.Option(
        help="Go on training this saved slot model (its architecture replaces the options given here).")] = None,
    eval_every: Annotated[int, typer.Option(min=1, help="Steps between probes on held-out questions.")] = 200,
    seed: Annotated[int, typer.Option(help="Seeds the model, the data order and the held-out split.")] = 0,
    data: DataOpt = None,
    eval_data: EvalOpt = None,
    eval_fraction: EvalFractionOpt = 0.1,
    eval_max: EvalMaxOpt = 64,
    corpus: CorpusOpt = None,
    max_questions: MaxQuestionsOpt = 4,
    prompt_format: PromptFormatOpt = "plain",
    resume: ResumeOpt = None,
    checkpoint_every: CheckpointEveryOpt = 100,
    grad_accum: GradAccumOpt = 1,
    precision: PrecisionOpt = "fp32",
    grad_checkpointing: GradCheckpointingOpt = False,
    num_processes: NumProcessesOpt = 1,
    dtype: DtypeOpt = "auto",
    device_map: DeviceMapOpt = None,
    install: Annotated[bool, typer.Option(
        help="Package the result as the packaged world LM's slot model (the hybrid's, if trained --with-adapter; "
             "refused for another base model).")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Train a memory-slot model for any causal LM on any QA data (the frozen LM never changes).

    Documents become memory vectors; questions are matched to their documents' keys, aggregate the best
    memories into a prefix, and the LM answers reading only that prefix (memkit/slots/train.py). A probe on
    held-out items (--eval-data, or --eval-fraction of the documents) reports recall and F1. The objective and
    matching switches give the ablations of docs/benchmarks.md."""
    from experiments.training.slots import run
    from experiments.world.recipes import install_slots
    from memkit.slots.train import SlotTrainConfig

    cfg = SlotTrainConfig(minutes=minutes, max_steps=max_steps, batch_size=batch_size, lr=lr, slots=slots_per_doc,
                          mem_dim=mem_dim, prefix_len=prefix_len, objective=objective, matching=matching,
                          aggregation=aggregation, top_k=top_k, w_lm=w_lm, w_match=w_match,
                          w_contrast=w_contrast, contrast_margin=contrast_margin, with_adapter=with_adapter,
                          adapter_chunk_tokens=adapter_chunk_tokens, max_tokens=max_tokens,
                          pretrain_steps=pretrain_steps,
                          warmup_steps=warmup_steps, init_from=str(init_from or ""), eval_every=eval_every, seed=seed)
    sources = DataChoice(data, eval_data, eval_fraction, eval_max, corpus, max_questions)
    loop = LoopChoice(prompt_format, resume, checkpoint_every, grad_accum, precision, grad_checkpointing,
                      num_processes, dtype, device_map)
    _train(ctx, model, cfg, sources, loop, run, install_slots if install else None, out, json_out, "slot model")


@dataclass
class DataChoice:
    """The data options of a training command (see their --help)."""

    data: list[str] | None
    eval_data: list[str] | None
    eval_fraction: float
    eval_max: int
    corpus: list[str] | None
    max_questions: int


def _launcher_argv(argv: list[str]) -> list[str]:
    """``argv`` without its ``--num-processes`` option (the launched processes are the processes)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--num-processes":
            skip = True
        elif not arg.startswith("--num-processes="):
            out.append(arg)
    return out


def _train(ctx: typer.Context, model: str | None, cfg, sources: DataChoice, loop: LoopChoice, run, install,
           out: Path, json_out: bool, what: str) -> None:
    """Check ``cfg``, resolve the data, load the base model, ``run`` the recipe, ``install`` the result if asked,
    report. With ``--num-processes N`` (and no launcher around this process yet), run this command again in N
    processes under accelerate launch instead."""
    import os
    import sys

    from experiments.training.data import load_data
    from memkit import distributed
    from memkit.defaults import default_model
    from memkit.errors import ConfigError
    from memkit.lm import FrozenLM
    from memkit.prompts import QAFormat

    loop.apply(cfg)
    cfg.validate()
    if not sources.data and model is not None:
        raise ConfigError("give the training data with --data (e.g. --data squad:train-v1.1.json, or --data "
                          "jsonl:my-qa.jsonl); the synthetic world (--data world) suits only the packaged world LM")
    if sources.corpus and not getattr(cfg, "pretrain_steps", 0):
        raise ConfigError("--corpus feeds the self-supervised steps that come first; give --pretrain-steps N (how "
                          "many steps read it) or leave --corpus out")
    launched = int(os.environ.get("WORLD_SIZE", "1") or 1) > 1
    processes = loop.num_processes if not launched else int(os.environ["WORLD_SIZE"])
    if what == "slot model" and cfg.batch_size // (processes * cfg.grad_accum) < 2:
        raise ConfigError(f"--batch-size {cfg.batch_size} over {processes} processes x --grad-accum {cfg.grad_accum} "
                          f"leaves fewer than 2 items per bank; make it at least {2 * processes * cfg.grad_accum}")
    if cfg.resume and not cfg.init_from:
        from dataclasses import asdict

        from memkit import checkpoint

        checkpoint.precheck(cfg.resume, config=asdict(cfg), world=processes, grad_accum=cfg.grad_accum)
    if loop.num_processes > 1 and not launched:
        if cfg.batch_size % (loop.num_processes * cfg.grad_accum):
            raise ConfigError(f"--batch-size {cfg.batch_size} does not split over {loop.num_processes} processes x "
                              f"--grad-accum {cfg.grad_accum}; make it a multiple of "
                              f"{loop.num_processes * cfg.grad_accum}")
        typer.echo(f"training in {loop.num_processes} processes (accelerate launch)", err=True)
        code = distributed.launch(loop.num_processes, _launcher_argv(sys.argv[1:]))
        raise typer.Exit(code)
    group = distributed.current()
    data = load_data(sources.data or ["world"], seed=cfg.seed, eval_specs=sources.eval_data,
                     eval_fraction=sources.eval_fraction, eval_max=sources.eval_max, corpus=sources.corpus,
                     max_questions=sources.max_questions)
    lm = FrozenLM.load(model or default_model(), device=state(ctx).device, dtype=loop.dtype,
                       device_map=loop.device_map)
    QAFormat.of(loop.prompt_format, lm.tokenizer)          # a chat format needs the tokenizer's template: now
    if install is not None:
        from experiments.training.common import check_installable
        from experiments.world.recipes import adapter_target, slots_target

        target = adapter_target() if what == "generator" else slots_target(bool(getattr(cfg, "with_adapter", "")))
        check_installable((lm.fingerprint, lm.weights_digest), *target, out)
    say = (lambda msg: typer.echo(msg, err=True)) if group.main else (lambda _msg: None)
    summary = run(lm, cfg, data, out, log=say)
    distributed.finish()
    if not group.main:
        return
    if install is not None:
        summary["installed"] = str(install(out))
    print_json(summary) if json_out else typer.echo(f"{what} saved to {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
