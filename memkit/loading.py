"""Loading Hugging Face models and tokenizers by local directory or hub id, and choosing device and dtype.

Owns: the rules for where a model comes from (a reference model's short name, ``memkit.reference``; a GGUF
file, dequantized once into a cached directory, ``memkit.gguf``; a local directory with no network attempt; a hub
id from the local cache, then the hub: ``resolve_model``), one-line errors that say how to point at a local copy, quiet loading, the
``auto`` device/dtype choice (a launched process's own GPU), and handing a ``device_map`` to ``from_pretrained``.
Knows nothing of memory methods, storage or the CLI.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from transformers.utils import logging as hf_logging

from memkit.errors import ConfigError, ModelLoadError

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

def resolve_device(device: str) -> torch.device:
    """``auto`` is CUDA when available (under a launcher of several processes, this process's GPU: ``cuda:N``
    with N its ``LOCAL_RANK``), else CPU; otherwise a torch device string that exists here."""
    if device == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        local, world = os.environ.get("LOCAL_RANK", "").strip(), os.environ.get("WORLD_SIZE", "").strip()
        if local.isdigit() and world.isdigit() and int(world) > 1:
            return torch.device(f"cuda:{int(local) % torch.cuda.device_count()}")
        return torch.device("cuda")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"device {device!r} is not a device; set the device option to auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} needs CUDA, which is not available here; set the device option to cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device!r} is not available here; set the device option to cpu")
    return dev


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto`` is bfloat16 on a CUDA device that supports it, else float32; or float32/float16/bfloat16."""
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if dtype not in _DTYPES:
        raise ConfigError(f"dtype {dtype!r} is not supported; set the dtype option to auto, {', '.join(_DTYPES)}")
    return _DTYPES[dtype]


@dataclass(frozen=True)
class ModelSource:
    """Where a named model is read from."""

    load_from: str
    """What ``from_pretrained`` reads: a local directory or a hub id."""
    name: str
    """The name a store records and shows: a reference model's short name, a resolved local path, or a hub id."""
    digest: str | None = None
    """For a model made from a GGUF file: ``gguf-sha256:<hex>``, its fingerprint (the file's content)."""


def resolve_model(name_or_path: str) -> ModelSource:
    """A reference model's short name -> its GGUF file (always: a local folder of that name is named ``./NAME``); a GGUF file -> its cached float32 directory (converted
    now if needed); a directory made from a GGUF file keeps that file's digest; anything else is loaded as it is
    named (a directory, or a hub id)."""
    from memkit import gguf, reference

    local = os.path.expanduser(name_or_path)
    if reference.is_reference(name_or_path):  # a local folder of that name is ./NAME (a store's name stays one model)
        directory = gguf.dequantized(reference.reference_file(name_or_path), label=name_or_path)
        return ModelSource(str(directory), name_or_path, gguf.gguf_digest(directory))
    if not os.path.isdir(local) and (local.lower().endswith(".gguf") or gguf.is_gguf(local)):
        directory = gguf.dequantized(local, label=name_or_path)
        return ModelSource(str(directory), str(Path(local).resolve()), gguf.gguf_digest(directory))
    if os.path.isdir(local):
        return ModelSource(name_or_path, str(Path(local).resolve()), gguf.gguf_digest(local))
    return ModelSource(name_or_path, name_or_path)


def _looks_like_path(name: str) -> bool:
    """A name meant as a filesystem path rather than a hub id (``org/model``)."""
    if name.startswith(("/", "./", "../", "~", ".\\", "..\\")) or name in (".", "..") or "\\" in name:
        return True
    parts = name.split("/")
    return len(parts) > 2 or (len(parts) == 2 and Path(parts[0]).exists())


def _hub_offline() -> bool:
    try:
        from huggingface_hub import constants
        if constants.HF_HUB_OFFLINE:
            return True
    except ImportError:
        pass
    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return any(f.strip().lower() in ("1", "true", "yes", "on") for f in flags)


def one_line(exc: BaseException) -> str:
    text = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
    return text if len(text) <= 200 else text[:197] + "..."


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """No progress bars or info logs from transformers while loading."""
    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def load_pretrained(model_cls, tokenizer_cls, name_or_path: str, *, revision: str | None = None,
                    dtype: torch.dtype | None = None, trust_remote_code: bool = False,
                    device_map: str | dict | None = None):
    """``(model, tokenizer)`` from ``model_cls``/``tokenizer_cls`` (transformers Auto classes), on the CPU, or
    placed by ``device_map`` (``from_pretrained``'s: ``auto``, ``cpu``, ``cuda:0``, a dict of module names).

    A directory that exists loads with ``local_files_only`` and no network attempt; a name that looks like a
    path but does not exist fails at once; anything else is a hub id, read from the local cache first and then
    from the hub. Every failure is a one-line ``ModelLoadError`` that says how to point at a local copy.
    """
    local = os.path.expanduser(name_or_path)
    kw = dict(revision=revision, trust_remote_code=trust_remote_code)
    if dtype is not None:
        kw["dtype"] = dtype
    if device_map is not None:
        kw["device_map"] = device_map
    with quiet_transformers():
        if os.path.exists(local):
            if not os.path.isdir(local):
                raise ModelLoadError(f"{name_or_path} is a file but not a GGUF file; point at a model directory "
                                     f"holding config.json, or at a .gguf file")
            try:
                return _from_pretrained(model_cls, tokenizer_cls, local, local_only=True, **kw)
            except Exception as exc:  # transformers raises many kinds; report them as one line
                raise ModelLoadError(f"could not load a model from {name_or_path}: {one_line(exc)}") from exc
        if _looks_like_path(name_or_path):
            raise ModelLoadError(f"no model directory at {name_or_path}")
        try:
            return _from_pretrained(model_cls, tokenizer_cls, name_or_path, local_only=True, **kw)
        except Exception as exc:
            reason = one_line(exc)
        if _hub_offline():
            reason = f"offline mode is on and it is not in the local cache ({reason})"
        else:
            try:
                return _from_pretrained(model_cls, tokenizer_cls, name_or_path, local_only=False, **kw)
            except Exception as exc:
                reason = one_line(exc)
    raise ModelLoadError(
        f"could not fetch model {name_or_path!r} from the Hugging Face hub: {reason}. Download it where there is "
        f"network (e.g. `hf download {name_or_path} --local-dir DIR`) and point memkit at that local directory "
        f"(`memkit init --model DIR`)")


def _from_pretrained(model_cls, tokenizer_cls, source: str, *, local_only: bool, **kw):
    tokenizer = tokenizer_cls.from_pretrained(source, local_files_only=local_only, **{
        k: v for k, v in kw.items() if k not in ("dtype", "device_map")})
    model = model_cls.from_pretrained(source, local_files_only=local_only, **kw)
    return model, tokenizer
