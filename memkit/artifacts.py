"""Saved trainable parts of memkit (an adapter generator, a slot model): their files and what loading checks.

Owns: writing an artifact directory (``<name>.json``: a format number, the model's config, and what the
caller adds, e.g. how it was trained, on which data, with which prompt format; ``<name>.safetensors``: the
weights; each file written atomically), and reading one back with every check a user can trust: a directory
that holds no such artifact, a format newer than this memkit reads, a config with fields this memkit does not
know or without ones it needs, another base model, and weights that do not fit the config are each refused
with one line (``ConfigError``), never a traceback. Knows nothing of what the models compute.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from memkit.errors import ConfigError

FORMAT = 2
"""1: the first artifacts (no ``format`` field); 2: ``format``, ``data`` and ``prompt_format`` recorded."""


@dataclasses.dataclass(frozen=True)
class ArtifactKind:
    """What one kind of artifact is called and where its files are."""

    name: str
    """For messages: "generator", "slot model"."""
    config_file: str
    weights_file: str
    train_command: str
    """The command that makes one, named when a directory holds none."""


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save(directory: str | Path, kind: ArtifactKind, config, module: torch.nn.Module, extra: dict | None = None) -> Path:
    """Writes ``module``'s weights and ``{"format", "config", **extra}``; returns the directory."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    _write_atomic(out / kind.weights_file, lambda tmp: save_file(tensors, str(tmp)))
    meta = {"format": FORMAT, "config": dataclasses.asdict(config), **(extra or {})}
    text = json.dumps(meta, indent=2) + "\n"
    _write_atomic(out / kind.config_file, lambda tmp: tmp.write_text(text))
    return out


def read_meta(directory: str | Path, kind: ArtifactKind) -> dict:
    """The artifact's json, checked to be one this memkit reads."""
    src = Path(directory)
    if not (src / kind.config_file).is_file() or not (src / kind.weights_file).is_file():
        raise ConfigError(f"{src} holds no {kind.name} ({kind.config_file} and {kind.weights_file}); make one with "
                          f"`{kind.train_command}`")
    try:
        meta = json.loads((src / kind.config_file).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{src / kind.config_file} cannot be read ({e}); the {kind.name} is damaged") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise ConfigError(f"{src / kind.config_file} has no config; it is not a {kind.name} memkit wrote")
    version = meta.get("format", 1)
    if not isinstance(version, int) or version > FORMAT:
        raise ConfigError(f"the {kind.name} in {src} has format {version!r}, newer than this memkit reads "
                          f"({FORMAT}); upgrade memkit")
    return meta


def build_config(config_cls, values: dict, kind: ArtifactKind, src: str | Path):
    """``config_cls(**values)``, refusing unknown fields and missing required ones with one line."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"the {kind.name} in {src} has settings this memkit does not know ({', '.join(unknown)}); "
                          f"it was written by a newer memkit: upgrade memkit")
    required = [n for n, f in fields.items()
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [n for n in required if n not in values]
    if missing:
        raise ConfigError(f"the {kind.name} in {src} lacks settings ({', '.join(missing)}); it is damaged or "
                          f"not memkit's")
    try:
        return config_cls(**values)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"the {kind.name} in {src} has settings this memkit cannot use ({e})") from None


def check_base(config, lm, kind: ArtifactKind, src: str | Path) -> None:
    """Refuses an artifact built for another base model (architecture and tokenizer, or weights)."""
    if lm is None:
        return
    if (config.base_model and config.base_model != lm.fingerprint) or \
            (config.base_weights and config.base_weights != lm.weights_digest):
        raise ConfigError(f"the {kind.name} in {src} was trained for another base model ({config.base_model[:12]}; "
                          f"this one is {lm.fingerprint[:12]}, {lm.name}); train one for it with "
                          f"`{kind.train_command} --model {lm.name}`")


def load_weights(module: torch.nn.Module, directory: str | Path, kind: ArtifactKind) -> None:
    """The saved weights into ``module``; weights of another shape or set of names are one line."""
    path = Path(directory) / kind.weights_file
    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as e:
        raise ConfigError(f"{path} cannot be read ({e}); the {kind.name} is damaged") from None
    try:
        module.load_state_dict(tensors)
    except RuntimeError as e:
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip() and "Error(s)" not in ln), str(e))
        raise ConfigError(f"the weights in {path} do not fit the {kind.name}'s config ({first[:200]})") from None
