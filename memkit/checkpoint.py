"""Training checkpoints: what a run needs to go on exactly where it stopped, written so that a crash at any moment
leaves the previous checkpoint or the new one, never half of one.

A checkpoint directory holds ``LATEST`` (the name of the current checkpoint) and that checkpoint, a folder
``step-00000100-<6 hex>`` with:
  - ``model.safetensors``: the trained module's ``state_dict``;
  - ``optimizer.safetensors``: AdamW's per-parameter state (``<index>.exp_avg``, ``<index>.exp_avg_sq``,
    ``<index>.step``, indexes in the order of the module's trainable parameters) and ``optimizer.json``: its
    ``param_groups`` and the names of those parameters;
  - ``rng.safetensors``: torch's CPU (and CUDA) generator states;
  - ``state.json``: the step reached, the planned total, the seconds spent, the report so far (the loss of every
    step, the evaluations), Python's and NumPy's generator states, the run's config and its digest, and the
    shape of the split (processes x micro-batches).
A new checkpoint is written whole into a hidden temporary folder, synced, renamed into place, and only then named
in ``LATEST`` (itself replaced by an atomic rename); older folders are deleted after that. No pickle: tensors go
through safetensors, everything else through JSON.

Owns: that layout, writing and reading it, and refusing a checkpoint of another configuration (trainable
tensors of other shapes, another batch size or split, other options) with one line naming what differs.
Must not know: what is trained or how (any ``nn.Module`` and its AdamW), the loop's schedule, models, storage
or the CLI.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from memkit.atomic import sync_dir, sync_file, write_atomic
from memkit.errors import ConfigError

FORMAT = 1
LATEST = "LATEST"
MODEL = "model.safetensors"
OPTIMIZER = "optimizer.safetensors"
OPTIMIZER_JSON = "optimizer.json"
RNG = "rng.safetensors"
STATE = "state.json"

MAY_CHANGE = ("minutes", "max_steps", "eval_every", "checkpoint_every", "resume", "init_from", "precision",
              "grad_checkpointing")
"""Options a resumed run may set differently from the run it goes on: how long it runs, how often it reports and
saves, where it starts from, and how (not what) it computes. Every other option must be the same (``grad_accum``
is checked through the split: processes x micro-batches per process)."""


@dataclass
class Saved:
    """A checkpoint as read back: the progress and the report so far (the tensors are already in place)."""

    path: Path
    step: int
    total: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _compared(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in MAY_CHANGE and k != "grad_accum"}


def config_digest(config: dict) -> str:
    """sha256 of the options a resumed run must share (every one but ``MAY_CHANGE`` and ``grad_accum``)."""
    payload = json.dumps(_compared(config), sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------------- writing

def _cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", copy=True).contiguous()


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj) + "\n", encoding="utf-8")


def _rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return tensors, {"python": [version, list(internal), gauss],
                     "numpy": [kind, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)]}


def save(directory: str | Path, *, module: torch.nn.Module, optimizer: torch.optim.Optimizer,
         names: list[str], step: int, total: int, seconds: float, losses: list[float], evals: list[dict],
         config: dict, world: int, grad_accum: int) -> Path:
    """Write a checkpoint of ``module`` (whose trainable parameters, by ``names``, ``optimizer`` steps) into
    ``directory`` and make it the current one; returns its folder."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:08d}-{os.urandom(3).hex()}"
    tmp = root / f".tmp-{name}"
    tmp.mkdir()
    try:
        save_file({k: _cpu(v) for k, v in module.state_dict().items()}, str(tmp / MODEL))
        opt = optimizer.state_dict()
        tensors, scalars = {}, {}
        for index, state in opt["state"].items():
            for key, value in state.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"{index}.{key}"] = _cpu(value)
                else:
                    scalars[f"{index}.{key}"] = value
        save_file(tensors, str(tmp / OPTIMIZER))
        _write_json(tmp / OPTIMIZER_JSON, {"param_groups": opt["param_groups"], "names": names, "scalars": scalars})
        rng_tensors, rng_json = _rng_state()
        save_file(rng_tensors, str(tmp / RNG))
        _write_json(tmp / STATE, {
            "format": FORMAT, "step": step, "total": total, "seconds": seconds, "losses": losses, "evals": evals,
            "config": config, "config_digest": config_digest(config), "world": world, "grad_accum": grad_accum,
            "parts": world * grad_accum, "rng": rng_json})
        for f in tmp.iterdir():
            sync_file(f)
        sync_dir(tmp)
        os.rename(tmp, root / name)
        sync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_atomic(root / LATEST, name + "\n")
    for old in root.iterdir():
        if old.is_dir() and old.name != name and (old.name.startswith("step-") or old.name.startswith(".tmp-step-")):
            shutil.rmtree(old, ignore_errors=True)
    return root / name


# ---------------------------------------------------------------------------------------------------- reading

RUN_FOLDER = "checkpoint"
"""Where a training run keeps its checkpoints inside its ``--out`` folder."""


def find(path: str | Path) -> Path:
    """The checkpoint folder ``path`` names: ``path`` itself when it is one, else the one its ``LATEST`` names;
    ``path`` may also be a run's ``--out`` folder, whose checkpoints are in its ``checkpoint`` folder."""
    p = Path(path).expanduser()
    if (p / STATE).is_file():
        return p
    if not p.is_dir():
        raise ConfigError(f"--resume {path}: no such directory")
    if not (p / LATEST).is_file() and (p / RUN_FOLDER / LATEST).is_file():
        p = p / RUN_FOLDER
    pointer = p / LATEST
    if not pointer.is_file():
        raise ConfigError(f"--resume {path}: no checkpoint there (no {LATEST} file and no {STATE})")
    name = pointer.read_text(encoding="utf-8").strip()
    if not name.startswith("step-") or "/" in name or not (p / name / STATE).is_file():
        raise ConfigError(f"--resume {path}: {LATEST} names {name!r}, which is not a complete checkpoint there")
    return p / name


def _fmt(value) -> str:
    return json.dumps(value) if isinstance(value, (str, list, dict)) else str(value)


def _check(where: Path, state: dict, module_shapes: dict[str, list[int]], saved_shapes: dict[str, list[int]],
           config: dict, world: int, grad_accum: int) -> None:
    """Refuse a checkpoint of another configuration with one line naming what differs."""
    if state.get("format") != FORMAT:
        raise ConfigError(f"--resume {where}: a checkpoint of format {state.get('format')}; this memkit reads "
                          f"format {FORMAT}")
    if module_shapes != saved_shapes:
        names = sorted(set(module_shapes) | set(saved_shapes))
        diff = [f"{n} {saved_shapes.get(n, 'absent')} there, {module_shapes.get(n, 'absent')} here"
                for n in names if module_shapes.get(n) != saved_shapes.get(n)]
        raise ConfigError(f"--resume {where}: the checkpoint's trained tensors differ from this model's "
                          f"({'; '.join(diff[:3])}{'; ...' if len(diff) > 3 else ''}); resume with the options "
                          f"that built it")
    before = state.get("config", {})
    if before.get("batch_size") != config.get("batch_size"):
        raise ConfigError(f"--resume {where}: the checkpoint was made with --batch-size {before.get('batch_size')}, "
                          f"this run has {config.get('batch_size')}")
    if state.get("parts") != world * grad_accum:
        raise ConfigError(
            f"--resume {where}: the checkpoint was made with {state.get('parts')} micro-batches per step "
            f"({state.get('world')} processes x --grad-accum {state.get('grad_accum')}), this run makes "
            f"{world * grad_accum} ({world} x --grad-accum {grad_accum}); set --grad-accum so that processes x "
            f"grad-accum is {state.get('parts')}")
    if before.get("inputs", "") != config.get("inputs", ""):
        there, here = before.get("inputs") or "not recorded", config.get("inputs") or "not recorded"
        raise ConfigError(f"--resume {where}: the checkpoint was trained on another base model or other data "
                          f"(there: {there}; here: {here}); resume with the run's own --model, --dtype, --data, "
                          f"--eval-data, --eval-fraction, --corpus and --max-questions")
    if state.get("config_digest") != config_digest(config):
        old, new = _compared(before), _compared(config)
        diff = [f"{_flag(k)} {_fmt(old.get(k))} there, {_fmt(new.get(k))} here"
                for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        raise ConfigError(f"--resume {where}: the checkpoint was made with other options "
                          f"({'; '.join(diff) or 'options this memkit does not know'}); only "
                          f"{', '.join(_flag(k) for k in MAY_CHANGE)} may change when resuming")


def load(path: str | Path, *, module: torch.nn.Module, optimizer: torch.optim.Optimizer, names: list[str],
         config: dict, world: int, grad_accum: int) -> Saved:
    """Read the checkpoint ``path`` names (``find``), check it was made by this configuration, and put its state
    in place: ``module``'s tensors, ``optimizer``'s state and the random generators (torch, Python, NumPy)."""
    where = find(path)
    try:
        state = json.loads((where / STATE).read_text(encoding="utf-8"))
        weights = load_file(str(where / MODEL), device="cpu")
        opt_meta = json.loads((where / OPTIMIZER_JSON).read_text(encoding="utf-8"))
        opt_tensors = load_file(str(where / OPTIMIZER), device="cpu")
        rng = load_file(str(where / RNG), device="cpu")
    except Exception as exc:  # noqa: BLE001 - safetensors' own error, OSError, bad JSON: all one line
        raise ConfigError(f"--resume {where}: the checkpoint cannot be read ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else 'damaged'}); resume from another one or start "
                          f"again without --resume") from None
    if not isinstance(state, dict) or not all(k in state for k in ("step", "total", "seconds", "rng", "config")):
        raise ConfigError(f"--resume {where}: the checkpoint's {STATE} lacks what a resumption needs (step, "
                          f"total, seconds, rng, config); resume from another one or start again without --resume")
    module_shapes = {k: list(v.shape) for k, v in module.state_dict().items()}
    saved_shapes = {k: list(v.shape) for k, v in weights.items()}
    _check(where, state, module_shapes, saved_shapes, config, world, grad_accum)
    if opt_meta.get("names") != names:
        raise ConfigError(f"--resume {where}: the checkpoint's optimizer steps other parameters than this "
                          f"model's trainable ones; resume with the options that built it")
    try:
        module.load_state_dict(weights)
        per_param: dict[int, dict] = {}
        for key, value in opt_tensors.items():
            index, name = key.split(".", 1)
            per_param.setdefault(int(index), {})[name] = value
        for key, value in opt_meta.get("scalars", {}).items():
            index, name = key.split(".", 1)
            per_param.setdefault(int(index), {})[name] = value
        groups = opt_meta["param_groups"]
        for g in groups:
            if isinstance(g.get("betas"), list):
                g["betas"] = tuple(g["betas"])
        optimizer.load_state_dict({"state": per_param, "param_groups": groups})
        torch.set_rng_state(rng["torch"])
        cuda = [rng[k] for k in sorted((k for k in rng if k.startswith("cuda.")), key=lambda k: int(k[5:]))]
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda[:torch.cuda.device_count()])
        version, internal, gauss = state["rng"]["python"]
        random.setstate((version, tuple(internal), gauss))
        kind, keys, pos, has_gauss, cached = state["rng"]["numpy"]
        np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as exc:
        raise ConfigError(f"--resume {where}: the checkpoint's state cannot be put in place ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else 'damaged'}); resume from another one or start "
                          f"again without --resume") from None
    return Saved(where, int(state["step"]), int(state["total"]), float(state["seconds"]),
                 list(state.get("losses", [])), list(state.get("evals", [])))


def precheck(path: str | Path, *, config: dict, world: int, grad_accum: int) -> Path:
    """Before anything is loaded: the checkpoint ``path`` names exists, is readable and was made with this
    run's options and split (``ConfigError`` otherwise). What the run reads (``inputs``) and the trained tensors
    are checked by ``load``, once the model is there."""
    where = find(path)
    try:
        state = json.loads((where / STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--resume {where}: the checkpoint cannot be read ({exc}); resume from another one or "
                          f"start again without --resume") from None
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict):
        raise ConfigError(f"--resume {where}: the checkpoint's {STATE} is not one memkit wrote; resume from another "
                          f"one or start again without --resume")
    same_inputs = {**config, "inputs": state["config"].get("inputs", "")}
    _check(where, state, {}, {}, same_inputs, world, grad_accum)
    return where


def latest_step(directory: str | Path) -> int | None:
    """The step of the checkpoint ``directory`` holds now, or None when it holds none."""
    try:
        where = find(directory)
        return int(json.loads((where / STATE).read_text(encoding="utf-8"))["step"])
    except (ConfigError, OSError, ValueError, KeyError):
        return None
