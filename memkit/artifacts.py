"""Saved trainable parts of memkit (an adapter generator, a slot model): their files and what loading checks.

Owns: writing an artifact directory (``<name>.safetensors``: the weights, then ``<name>.json``: a format
number, the model's config, what the caller adds, e.g. how it was trained, on which data, with which prompt
format, and the sha256 of the weights file; each file written atomically and synced), and reading one back with
every check a user can trust: a directory that holds no such artifact, a format newer than this memkit reads,
files that do not belong together (a save interrupted between them), a config with fields this memkit does not
know, without ones it needs or with values of the wrong type, another base model (architecture and tokenizer,
or weights), and weights that do not fit the config are each refused with one line (``ConfigError``), never a
traceback. Knows nothing of what the models compute.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from memkit.atomic import write_atomic
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


def save(directory: str | Path, kind: ArtifactKind, config, module: torch.nn.Module, extra: dict | None = None) -> Path:
    """Writes ``module``'s weights, then ``{"format", "config", **extra, "weights_sha256"}`` (the sha256 of the
    weights file, so that a load notices weights and config from two different saves); returns the directory."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    weights = safetensors_bytes(tensors)
    write_atomic(out / kind.weights_file, weights)
    meta = {"format": FORMAT, "config": dataclasses.asdict(config), **(extra or {}),
            "weights_sha256": hashlib.sha256(weights).hexdigest()}
    write_atomic(out / kind.config_file, (json.dumps(meta, indent=2) + "\n").encode("utf-8"))
    return out


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
    expected = meta.get("weights_sha256")
    if expected is not None:  # artifacts written before the field have none
        try:
            actual = _file_sha256(src / kind.weights_file)
        except OSError as e:
            raise ConfigError(f"{src / kind.weights_file} cannot be read ({e}); the {kind.name} is damaged") from None
        if actual != expected:
            raise ConfigError(f"the {kind.name}'s files in {src} do not belong together ({kind.weights_file} is not "
                              f"the one {kind.config_file} was saved with: a save was interrupted, or a file is "
                              f"damaged); retrain it "
                              f"(`{kind.train_command}`) or restore both files")
    return meta


def _fits(value, hint) -> bool:
    """Whether a JSON value fits a config field's type (``int``, ``float``, ``str``, ``bool``, ``list[...]``);
    a whole number is a float, a bool is no number."""
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint) or (typing.Any,)
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if origin is typing.Union or (origin is not None and type(hint).__name__ == "UnionType"):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return True  # a type this check does not know: the config's own validation decides


def _type_name(hint) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def build_config(config_cls, values: dict, kind: ArtifactKind, src: str | Path):
    """``config_cls(**values)``, refusing unknown fields, missing required ones and values of the wrong type with
    one line naming the file and the key."""
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
    hints = typing.get_type_hints(config_cls)
    for name, value in values.items():
        if name in hints and not _fits(value, hints[name]):
            raise ConfigError(f"{Path(src) / kind.config_file}: setting {name} is {json.dumps(value)}; it must be of "
                              f"type {_type_name(hints[name])} (the {kind.name} is damaged or was edited by hand)")
    try:
        return config_cls(**values)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"the {kind.name} in {src} has settings this memkit cannot use ({e})") from None


def _short_ids(a: str, b: str) -> tuple[str, str]:
    """``a`` and ``b`` cut to 12 characters after any version prefix, or as many more as tell them apart."""
    n = 12 + max(a.find(":") + 1, b.find(":") + 1)
    while n < max(len(a), len(b)) and a[:n] == b[:n]:
        n += 1
    return a[:n], b[:n]


def check_base(config, lm, kind: ArtifactKind, src: str | Path) -> None:
    """Refuses an artifact built for another base model (architecture and tokenizer, or weights), saying which."""
    if lm is None:
        return
    retrain = f"train one for it with `{kind.train_command} --model {lm.name}`"
    if config.base_model and config.base_model != lm.fingerprint:
        ours, theirs = _short_ids(config.base_model, lm.fingerprint)
        raise ConfigError(f"the {kind.name} in {src} was trained for another base model (another architecture or "
                          f"tokenizer: its fingerprint {ours}, this model's {theirs}, {lm.name}); {retrain}")
    if config.base_weights and not lm.weights_match(config.base_weights):
        legacy = ":" not in config.base_weights
        current = lm.legacy_weights_digest if legacy else lm.weights_digest
        ours, theirs = _short_ids(config.base_weights, current)
        hint = (" (an earlier memkit's digest, which depends on the dtype: if the weights are the same, load the "
                "model in the dtype it was trained in, --dtype)") if legacy else ""
        raise ConfigError(f"the {kind.name} in {src} was trained for another base model (the same architecture "
                          f"and tokenizer with other weights: its weights digest {ours}, this model's {theirs}, "
                          f"{lm.name}){hint}; {retrain}")


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


def load(module_cls, config_cls, directory: str | Path, kind: ArtifactKind, lm=None):
    """The ``module_cls`` saved in ``directory``: its config read and checked (``read_meta``, ``build_config``,
    and against ``lm``'s base model when given), the module built and its weights loaded, on ``lm``'s device.
    Every refusal is one ``ConfigError`` line."""
    meta = read_meta(directory, kind)
    config = build_config(config_cls, meta["config"], kind, directory)
    check_base(config, lm, kind, directory)
    try:
        module = module_cls(config)
    except (ConfigError, ValueError, TypeError) as e:
        raise ConfigError(f"the {kind.name} in {directory} has settings this memkit cannot build ({e})") from None
    load_weights(module, directory, kind)
    return module.to(lm.device) if lm is not None else module
