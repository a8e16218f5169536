"""What the training recipes share: a probe's mean F1, training between a probe before and after, saving a
trained model with its config, data summary and log, copying it into the package (never over a packaged model
of another base model). Knows no front door (``memkit train`` is the one; ``experiments/recipe_cli.py`` is the
experiments' own)."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from memkit import checkpoint


def mean_f1(preds: list[str], golds: list[str]) -> float:
    """Mean F1 (0-100) of ``preds`` against one gold answer each."""
    from memkit.datasets.metrics import f1

    return 100 * sum(f1(p, [g]) for p, g in zip(preds, golds)) / len(golds)


def probed_training(model, out: Path, cfg, log: Callable[[str], None], *, start: float,
                    probe: Callable[[bool], dict], train: Callable[[Callable], object], data: dict | None = None) -> dict:
    """``probe(baselines=True)`` before, ``train(evaluate)`` (``evaluate(model)`` probes without baselines),
    ``probe(True)`` after, then ``save_trained`` (with ``data``, the data summary); returns the summary
    (``start``: the run's ``time.time()``). In a process other than rank 0 of several (data-parallel training),
    only ``train``: rank 0 probes and saves."""
    from memkit import distributed

    group = distributed.current()
    if not group.main:
        report = train(lambda _model: {})
        return {"steps": report.steps, "rank": group.rank}
    first = _first_probe(out, getattr(cfg, "resume", ""), probe, log)
    report = train(lambda _model: probe(False))
    final = probe(True)
    log("after training: " + ", ".join(f"{k} {v:.1f}" for k, v in final.items()))
    seconds = time.time() - start + report.resumed_seconds      # a resumed run counts its earlier processes' time
    summary = {"steps": report.steps, "seconds": round(seconds, 1), "processes": group.world,
               "parameters": sum(p.numel() for p in model.parameters()), "device": str(model.device),
               "before": first, "final_probe": final}
    if report.resumed_at is not None:
        summary["resumed_at"] = report.resumed_at
    save_trained(model, out, cfg, summary, report, log, data=data)
    return summary


FIRST_PROBE = "probe_before.json"
"""Beside a run's checkpoints: the probe before its first step, which a resumed run reports instead of probing
again (a probe on a real LM reads every held-out item three ways: minutes)."""


def _first_probe(out: Path, resume: str, probe: Callable[[bool], dict], log: Callable[[str], None]) -> dict:
    """The probe before training: the one the run made when it first started, when ``resume`` goes on from a
    checkpoint beside which it was kept; else ``probe(True)``, kept in ``out``'s checkpoint folder."""
    if resume:
        kept = checkpoint.find(resume).parent / FIRST_PROBE
        if kept.is_file():
            first = json.loads(kept.read_text(encoding="utf-8"))
            log("before training (probed when the run first started): "
                + ", ".join(f"{k} {v:.1f}" for k, v in first.items()))
            return first
    first = probe(True)
    log("before training: " + ", ".join(f"{k} {v:.1f}" for k, v in first.items()))
    folder = out / checkpoint.RUN_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FIRST_PROBE).write_text(json.dumps(first) + "\n", encoding="utf-8")
    return first


def save_trained(model, out: Path, cfg, summary: dict, report, log: Callable[[str], None], *,
                 data: dict | None = None) -> None:
    """``model.save`` with the training config, the data it read and the summary, and ``training_log.json``
    beside it."""
    model.save(out, extra={"training": asdict(cfg), "data": data or {}, "summary": summary})
    (out / "training_log.json").write_text(json.dumps({"summary": summary, **report.to_dict()}, indent=2) + "\n")
    log(f"saved to {out} ({summary['seconds']:.0f}s in all)")


def _base_of(directory: Path, config_file: str) -> tuple[str, str]:
    """The base model's fingerprint and weights digest a saved model's config names (empty when unreadable)."""
    try:
        config = json.loads((directory / config_file).read_text())["config"]
        return str(config.get("base_model", "")), str(config.get("base_weights", ""))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "", ""


def _same_weights(a: str, b: str) -> bool:
    """Whether two weights digests can be told apart: digests of different kinds (before ``:``) say nothing."""
    kind = lambda d: d.split(":", 1)[0] if ":" in d else ""  # noqa: E731
    return not (a and b) or kind(a) != kind(b) or a == b


def run_inputs(lm, summary: dict) -> str:
    """What a training run reads, in one line: the base model (fingerprint, weights digest, dtype) and the data
    (specs, held-out split, corpus, questions per item); a resumed run must read the same."""
    return (f"base {lm.fingerprint[:16]} weights {str(lm.weights_digest)[:24]} {str(lm.dtype).replace('torch.', '')}; "
            f"data {','.join(summary.get('data', []))}; eval {','.join(summary.get('eval_data', [])) or '-'}; "
            f"split {summary.get('split', '')}; corpus {summary.get('corpus_documents', 0)} documents; "
            f"max_questions {summary.get('max_questions', '')}")


def check_installable(base: tuple[str, str], dest: Path, config_file: str, out: Path) -> None:
    """``ConfigError`` when ``dest`` (a packaged model's directory) belongs to another base model than ``base``
    (a fingerprint and weights digest): checked before training, so nobody trains only to be refused."""
    from memkit.errors import ConfigError

    fingerprint, weights = _base_of(dest, config_file) if dest.exists() else ("", "")
    if fingerprint and (fingerprint != base[0] or not _same_weights(weights, base[1])):
        raise ConfigError(f"--install would replace the packaged model in {dest}, built for another base model; "
                          f"leave out --install, keep yours in {out} and point the method at it "
                          f"(-o generator=DIR or -o model=DIR)")


def install_copy(out: Path, dest: Path, config_file: str) -> Path:
    """Replace ``dest`` (a packaged model's directory) with a copy of ``out`` (its training checkpoints left
    out), refused (``ConfigError``) when ``out`` was trained for another base model than the packaged one
    ``dest`` belongs to. The copy is made beside ``dest`` and renamed into place, so a crash leaves the old
    model or the new one."""
    check_installable(_base_of(out, config_file), dest, config_file, out)
    tmp, old = dest.with_name(f".{dest.name}.new"), dest.with_name(f".{dest.name}.old")
    for leftover in (tmp, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    shutil.copytree(out, tmp, ignore=shutil.ignore_patterns(checkpoint.RUN_FOLDER))
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest
