"""``memkit train``: build and train memkit's own models. ``base`` builds the world LM from scratch."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from cli.common import MODEL_HELP, handle_errors, print_json, state
from cli.config_options import command, config_parameters

train_app = typer.Typer(help="Train memkit's models: the world LM (base), and for any causal LM on any data the "
                             "adapter generator (adapter) and the memory-slot model (slots); and the second "
                             "retrieval hop's model for a store's keys (hop).",
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
# Options of the adapter and slots commands beside their training config's: how the run is launched and how the
# frozen LM is loaded.
NumProcessesOpt = Annotated[int, typer.Option(
    min=1, help="Train data-parallel in this many processes (one per GPU, or gloo on CPUs) through accelerate "
                "launch; the same result as one process with --grad-accum multiplied by it. For several machines "
                "run accelerate launch -m cli.main train ... on each.")]
DtypeOpt = Annotated[str, typer.Option(help="The frozen LM's dtype: auto, float32, bfloat16 or float16.")]
DeviceMapOpt = Annotated[Optional[str], typer.Option(
    help="Spread a model larger than one device over the GPUs (and the CPU) with this from_pretrained "
         "device_map, e.g. auto; default: the whole model on --device.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]


@dataclass
class Loading:
    """How a training command launches and loads the frozen LM (see their --help)."""

    num_processes: int
    dtype: str
    device_map: str | None


@train_app.command("base")
@handle_errors
def base(
    out: Annotated[Path, typer.Option(help="Where to save the model.")] = Path("build/world-lm"),
    minutes: Annotated[float, typer.Option(
        help="Wall-clock training budget; the schedule is planned from the measured speed, so a slower machine "
             "gets fewer steps (the packaged model: 40 minutes, 3263 steps on 2 CPU cores).")] = 40.0,
    max_steps: Annotated[int, typer.Option(help="Stop after this many steps (0: the budget decides).")] = 0,
    seed: Annotated[int, typer.Option(help="Seeds the model, the data order and the reading worlds.")] = 0,
    checkpoint_every: Annotated[int, typer.Option(
        help="Steps between checkpoints in OUT/checkpoint (0: none).")] = 250,
    resume: Annotated[str, typer.Option(
        help="Go on from a checkpoint, or from the --out folder of an interrupted run (the same options).")] = "",
    install: Annotated[bool, typer.Option(help="Make the result memkit's packaged default model.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Pretrain the world LM on the synthetic world (tokenizer, model, reading and closed-book QA)."""
    from experiments.world.build_lm import Recipe, install_model, train

    recipe = Recipe(seed=seed, minutes=minutes, max_steps=max_steps, checkpoint_every=checkpoint_every,
                    resume=resume)
    summary = train(recipe, out, log=lambda msg: typer.echo(msg, err=True))
    if install:
        summary["installed"] = str(install_model(out))
    print_json(summary) if json_out else typer.echo(f"world LM saved to {out}")


@train_app.command("hop")
@handle_errors
def hop(
    data: Annotated[Optional[list[str]], typer.Option(
        "--data", help="Benchmarks to fit on, repeatable; they need questions across two documents: world (fresh "
                       "worlds 20,001-20,003, never a benchmark world), world:SEED, or a dataset as KIND:PATH "
                       "(e.g. english:experiments/data/english). Default: world.", show_default=False)] = None,
    eval_data: Annotated[Optional[list[str]], typer.Option(
        "--eval-data", help="Benchmarks to measure the second hop on after fitting (specs as --data): the second "
                            "document's recall at 1 and 5 and how often the gate opens, per question type.",
        show_default=False)] = None,
    embedder: Annotated[str, typer.Option(
        help="The keys the model lives among, as the store's --embedder: lexical (the world methods' default), "
             "lexical-tf, minilm, or an encoder's directory. A store with other keys refuses the model.")] = "lexical",
    first_k: Annotated[int, typer.Option(min=1, help="Documents the first search finds (the methods' top_k).")] = 4,
    threshold: Annotated[Optional[float], typer.Option(
        help="The gate opens above this probability: higher, fewer second searches on single-document "
             "questions and fewer two-document questions reached. Default: the hop model's own (0.8, chosen on a "
             "fresh world, 20004, where it kept single-document F1 and 97 % of the two-document gain of 0.5).",
        show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Seeds the gate's fit.")] = 0,
    out: Annotated[Path, typer.Option(help="Where to save the hop model.")] = Path("build/hop-model"),
    install: Annotated[bool, typer.Option(
        help="Package the result as the world's hop model (hop_model=packaged; lexical keys only).")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Fit the second retrieval hop's model for a store's keys: a gate that says when a question needs a second
    search, and the prior that turns the first document's sentences into the second search's query.

    Use it with -o hop_model=DIR on rag, adapter, slots or hybrid (docs/benchmarks.md, "A second retrieval
    hop"). Fitting reads no language model: only the keys of the benchmarks' documents and questions."""
    from memkit.embedders import build_embedder
    from memkit.errors import ConfigError
    from memkit.recipes import hop as hop_recipe

    if embedder == "lm":
        raise ConfigError("--embedder lm keys by a language model's states; a hop model is fitted among text "
                          "embedders' keys (lexical, lexical-tf, minilm or an encoder's directory)")
    keys = build_embedder(None, embedder, None)
    say = lambda msg: typer.echo(msg, err=True)  # noqa: E731
    fit_on = [b for spec in (data or ["world"]) for b in _hop_benchmarks(spec, "--data")]
    measure_on = [b for spec in (eval_data or []) for b in _hop_benchmarks(spec, "--eval-data")]
    chosen = {} if threshold is None else {"threshold": threshold}      # else HopConfig's default
    _, report = hop_recipe.run(fit_on, keys, measure_on=measure_on, first_k=first_k, seed=seed, out=out, log=say,
                               **chosen)
    if install:
        from experiments.world.recipes import install_hop

        report["installed"] = str(install_hop(out))
    print_json(report) if json_out else typer.echo(f"hop model saved to {out}")


def _hop_benchmarks(text: str, flag: str) -> list[tuple[str, object]]:
    """The named benchmarks a hop ``--data``/``--eval-data`` spec stands for."""
    from memkit.datasets.loaders import load_benchmark
    from memkit.errors import ConfigError
    from memkit.recipes.data import GENERIC, WORLD, parse_spec

    spec = parse_spec(text, flag)
    if spec.kind == WORLD:
        from experiments.world.recipes import hop_benchmarks

        return hop_benchmarks(spec.seed)
    if spec.kind == GENERIC:
        raise ConfigError(f"{flag} {text}: a hop model needs each question's gold documents by id and its type; "
                          "the generic jsonl format has neither (give world, world:SEED or a dataset KIND:PATH)")
    try:
        return [(str(spec), load_benchmark(spec.kind, spec.path))]
    except ValueError as exc:
        raise ConfigError(f"{flag} {spec}: {exc}") from None


def _shared(what: str, default_out: str, install_help: str) -> list[inspect.Parameter]:
    """The parameters a training command has beside its config's fields."""
    kw = inspect.Parameter.KEYWORD_ONLY

    def p(name, annotation, default):
        return inspect.Parameter(name, kw, annotation=annotation, default=default)

    return [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        p("model", Annotated[Optional[str], typer.Option(
            help=f"Base model: {MODEL_HELP} (default: the packaged world LM).")], None),
        p("out", Annotated[Path, typer.Option(help=f"Where to save the {what}.")], Path(default_out)),
        p("data", DataOpt, None), p("eval_data", EvalOpt, None), p("eval_fraction", EvalFractionOpt, 0.1),
        p("eval_max", EvalMaxOpt, 64), p("corpus", CorpusOpt, None), p("max_questions", MaxQuestionsOpt, 4),
        p("num_processes", NumProcessesOpt, 1), p("dtype", DtypeOpt, "auto"), p("device_map", DeviceMapOpt, None),
        p("install", Annotated[bool, typer.Option(help=install_help)], False),
        p("json_out", JsonOpt, False),
    ]


NOT_OPTIONS = ("inputs",)
"""Training-config fields that are not options (set by the recipe)."""


def _training_command(name: str, doc: str, config_cls, what: str, default_out: str, install_help: str,
                      recipe: str, installer: str):
    """The ``memkit train NAME`` command: every field of ``config_cls`` an option (its docstring the help), plus
    the shared data, launch and loading options; ``recipe`` and ``installer`` name what runs and packages it."""
    fields = config_parameters(config_cls, skip=NOT_OPTIONS)

    @handle_errors
    def run(**values):
        import importlib

        ctx = values.pop("ctx")
        cfg = config_cls(**{p.name: values.pop(p.name) for p in fields})
        sources = DataChoice(*(values.pop(k) for k in ("data", "eval_data", "eval_fraction", "eval_max", "corpus",
                                                       "max_questions")))
        loading = Loading(values.pop("num_processes"), values.pop("dtype"), values.pop("device_map"))
        module, attr = recipe.rsplit(".", 1)
        install = None
        if values.pop("install"):
            where, fn = installer.rsplit(".", 1)
            install = getattr(importlib.import_module(where), fn)
        _train(ctx, values.pop("model"), cfg, sources, loading, getattr(importlib.import_module(module), attr),
               install, values.pop("out"), values.pop("json_out"), what)

    return command(name, doc, _shared(what, default_out, install_help) + fields, run)


def _register_training_commands() -> None:
    from memkit.train_config import AdapterTrainConfig, SlotTrainConfig   # torch-free: --help stays fast

    train_app.command("adapter")(_training_command(
        "adapter",
        """Train an adapter generator for any causal LM on any QA data (the frozen LM never changes).

    Optional self-supervised steps first (--pretrain-steps; they read --corpus, or the data's documents), then QA
    fine-tuning: the documents reach the LM only through their adapter, the loss is on the answers, with
    reconstruction, completion and contrast losses beside it (memkit/adapters/train.py). A probe on held-out
    items (--eval-data, or --eval-fraction of the documents) reports F1 before, during and after. Every training
    option is a field of AdapterTrainConfig, its help the field's doc; docs/adapters.md gives the packaged world
    generator's commands.""",
        AdapterTrainConfig, "generator", "build/adapter-generator",
        "Package the result as the packaged world LM's generator (refused for another base model).",
        "memkit.recipes.adapter.run", "experiments.world.recipes.install_adapter"))
    train_app.command("slots")(_training_command(
        "slots",
        """Train a memory-slot model for any causal LM on any QA data (the frozen LM never changes).

    Documents become memory vectors; questions are matched to their documents' keys, aggregate the best
    memories into a prefix, and the LM answers reading only that prefix (memkit/slots/train.py). A probe on
    held-out items (--eval-data, or --eval-fraction of the documents) reports recall and F1. The objective and
    matching switches give the ablations of docs/benchmarks.md. Every training option is a field of
    SlotTrainConfig (the model's shape, the loop's, the losses'), its help the field's doc.""",
        SlotTrainConfig, "slot model", "build/slot-model",
        "Package the result as the packaged world LM's slot model (the hybrid's, if trained --with-adapter; "
        "refused for another base model).",
        "memkit.recipes.slots.run", "experiments.world.recipes.install_slots"))


_register_training_commands()


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


def _train(ctx: typer.Context, model: str | None, cfg, sources: DataChoice, loop: Loading, run, install,
           out: Path, json_out: bool, what: str) -> None:
    """Check ``cfg``, resolve the data, load the base model, ``run`` the recipe, ``install`` the result if asked,
    report. With ``--num-processes N`` (and no launcher around this process yet), run this command again in N
    processes under accelerate launch instead."""
    import os
    import sys

    from memkit.recipes.data import load_data
    from memkit import distributed
    from memkit.defaults import default_model
    from memkit.errors import ConfigError
    from memkit.lm import FrozenLM
    from memkit.prompts import QAFormat

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
    from experiments.world import adapter_data

    data = load_data(sources.data or ["world"], seed=cfg.seed, eval_specs=sources.eval_data, world=adapter_data,
                     eval_fraction=sources.eval_fraction, eval_max=sources.eval_max, corpus=sources.corpus,
                     max_questions=sources.max_questions)
    lm = FrozenLM.load(model or default_model(), device=state(ctx).device, dtype=loop.dtype,
                       device_map=loop.device_map)
    QAFormat.of(cfg.prompt_format, lm.tokenizer)          # a chat format needs the tokenizer's template: now
    if install is not None:
        from memkit.recipes.common import check_installable
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
