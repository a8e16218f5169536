"""What the training recipes share: command-line options from a config dataclass (one ``--field-name`` per
field, typed by its default, booleans as ``--x/--no-x``), a probe's mean F1, training between a probe before
and after, saving a trained model with its config and log, copying it into the package, and the recipes'
``main``."""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Callable


def add_config_options(parser: argparse.ArgumentParser, config_cls) -> None:
    """Add an option for every field of the dataclass ``config_cls``."""
    for f in fields(config_cls):
        kind = type(f.default)
        if kind is bool:
            parser.add_argument("--" + f.name.replace("_", "-"), action=argparse.BooleanOptionalAction,
                                default=f.default)
        else:
            parser.add_argument("--" + f.name.replace("_", "-"), type=kind, default=f.default)


def mean_f1(preds: list[str], golds: list[str]) -> float:
    """Mean F1 (0-100) of ``preds`` against one gold answer each."""
    from experiments.bench.metrics import f1

    return 100 * sum(f1(p, [g]) for p, g in zip(preds, golds)) / len(golds)


def probed_training(model, out: Path, cfg, log: Callable[[str], None], *, start: float,
                    probe: Callable[[bool], dict], train: Callable[[Callable], object]) -> dict:
    """``probe(baselines=True)`` before, ``train(evaluate)`` (``evaluate(model)`` probes without baselines),
    ``probe(True)`` after, then ``save_trained``; returns the summary (``start``: the run's ``time.time()``)."""
    first = probe(True)
    log("before training: " + ", ".join(f"{k} {v:.1f}" for k, v in first.items()))
    report = train(lambda _model: probe(False))
    final = probe(True)
    log("after training: " + ", ".join(f"{k} {v:.1f}" for k, v in final.items()))
    summary = {"steps": report.steps, "seconds": round(time.time() - start, 1),
               "parameters": sum(p.numel() for p in model.parameters()), "device": str(model.device),
               "before": first, "final_probe": final}
    save_trained(model, out, cfg, summary, report, log)
    return summary


def save_trained(model, out: Path, cfg, summary: dict, report, log: Callable[[str], None]) -> None:
    """``model.save`` with the training config and summary, and ``training_log.json`` beside it."""
    model.save(out, extra={"training": asdict(cfg), "summary": summary})
    (out / "training_log.json").write_text(json.dumps({"summary": summary, **report.to_dict()}, indent=2) + "\n")
    log(f"saved to {out} ({summary['seconds']:.0f}s in all)")


def install_copy(out: Path, dest: Path) -> Path:
    """Replace ``dest`` (a packaged model's directory) with a copy of ``out``."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(out, dest)
    return dest


def recipe_main(argv: list[str] | None, *, prog: str, description: str, config_cls, default_out: str,
                run: Callable, install: Callable[[Path], Path]) -> None:
    """Parse ``--model --out --device --install`` and the config's options, load the LM, ``run`` the recipe
    and, with ``--install``, package the result."""
    from memkit.defaults import default_model
    from memkit.lm import FrozenLM

    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--model", default=None, help="base model (default: the packaged world LM)")
    parser.add_argument("--out", type=Path, default=Path(default_out))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--install", action="store_true")
    add_config_options(parser, config_cls)
    args = vars(parser.parse_args(argv))
    model, out, device, do_install = args.pop("model"), args.pop("out"), args.pop("device"), args.pop("install")
    lm = FrozenLM.load(model or default_model(), device=device)
    run(lm, config_cls(**args), out, log=lambda m: print(m, flush=True))
    if do_install:
        print(f"installed: {install(out)}")
