"""GGUF checkpoints as models: a ``.gguf`` file is dequantized once and cached as an ordinary model directory.

Owns: telling a GGUF file by its magic bytes, its content hash (remembered per path, size, times and inode, so a
250 MB file is not hashed on every load), the cache folder (``MEMKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/memkit``,
else ``~/.cache/memkit``), and turning a file into a cached directory (``models/gguf-<sha256>/``: ``config.json``,
``model.safetensors`` in float32, the tokenizer's files and ``memkit-gguf.json`` naming the file it came from),
written to a work folder and renamed, so the cache never holds a half-made model; the work folder of a
conversion whose process was killed is deleted by the next one. A model loaded from that directory is
fingerprinted by the file's hash (``gguf_digest``), so a store or an artifact built on a GGUF file is tied to
the file's content.

transformers does the reading (``from_pretrained(..., gguf_file=...)``, through the ``gguf`` package); memkit
only caches what it produced, because transformers converts the file again on every load (about a minute for a
270M model on two cores) and will not ``save_pretrained`` a model it read from GGUF. Knows nothing of memory
methods, storage or the CLI.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from memkit.atomic import write_atomic
from memkit.errors import ModelLoadError

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
MARKER = "memkit-gguf.json"
"""The file in a cached directory that names the GGUF file it was made from; its presence completes the cache."""
DIGEST_PREFIX = "gguf-sha256:"


def cache_root() -> Path:
    """Where memkit keeps what it derives from models: ``MEMKIT_CACHE_DIR``, ``$XDG_CACHE_HOME/memkit`` or
    ``~/.cache/memkit``."""
    if os.environ.get("MEMKIT_CACHE_DIR", "").strip():
        return Path(os.environ["MEMKIT_CACHE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "memkit"


def is_gguf(path: str | Path) -> bool:
    """Whether ``path`` is a regular file that starts with GGUF's magic bytes."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


def file_sha256(path: Path) -> str:
    """The file's sha256, remembered in the cache by path, size and modification time."""
    st = path.stat()
    memo_file = cache_root() / "gguf-hashes.json"
    # ctime and inode too: a copy that keeps the old mtime (cp -p, rsync -t, tar) still changes them
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|{st.st_ino}"
    try:
        memo = json.loads(memo_file.read_text("utf-8"))
        if not isinstance(memo, dict):
            memo = {}
    except (OSError, ValueError):
        memo = {}
    if isinstance(memo.get(key), str):
        return memo[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    memo = {k: v for k, v in memo.items() if not k.startswith(f"{path.resolve()}|")}
    memo[key] = digest
    try:
        memo_file.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(memo_file, json.dumps(memo, indent=0, sort_keys=True))
    except OSError:  # a read-only cache only costs hashing again next time
        pass
    return digest


def gguf_digest(directory: str | Path) -> str | None:
    """The fingerprint of a model directory made from a GGUF file (``gguf-sha256:<hex>``), or None for any other
    directory."""
    marker = Path(directory) / MARKER
    try:
        data = json.loads(marker.read_text("utf-8"))
        return DIGEST_PREFIX + data["sha256"] if isinstance(data.get("sha256"), str) else None
    except (OSError, ValueError, AttributeError):
        return None


def _require_gguf_package() -> None:
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise ModelLoadError("reading GGUF files needs the gguf package: pip install gguf "
                             "(or pip install 'memkit[gguf]')") from None


def _architecture(path: Path) -> str:
    """``general.architecture`` from the file's header, or '' when the header cannot be read."""
    try:
        from gguf import GGUFReader

        field = GGUFReader(str(path)).fields.get("general.architecture")
        return bytes(field.parts[field.data[0]]).decode("utf-8") if field is not None else ""
    except Exception:  # a damaged header shows up again, with transformers' reason, when the model loads
        return ""


def dequantized(path: str | Path, *, label: str | None = None) -> Path:
    """The cached model directory for the GGUF file at ``path``, made now if it is not there yet (float32
    weights, config, tokenizer). Errors are one-line ``ModelLoadError``s: not a GGUF file, the ``gguf`` package
    missing, an architecture transformers cannot read, a cache that cannot be written."""
    path = Path(path).expanduser()
    shown = label or str(path)
    if not path.is_file():
        raise ModelLoadError(f"no GGUF file at {shown}")
    if not is_gguf(path):
        raise ModelLoadError(f"{shown} is not a GGUF file (it does not start with the GGUF magic bytes); point at a "
                             f".gguf file or a model directory holding config.json")
    digest = file_sha256(path)
    target = cache_root() / "models" / f"gguf-{digest}"
    if gguf_digest(target) == DIGEST_PREFIX + digest:
        return target
    _require_gguf_package()
    log.info("%s: converting the GGUF file to a float32 model once (a minute or more); cached in %s", shown, target)
    started = time.monotonic()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned(target.parent)
        work = Path(tempfile.mkdtemp(prefix=f".gguf-{os.getpid()}-", dir=target.parent))
        work.chmod(0o777 & ~_umask())  # mkdtemp's 0700 would hide a shared cache from other users
    except OSError as exc:
        raise ModelLoadError(f"cannot write the GGUF cache under {target.parent} ({exc.strerror or exc}); set "
                             f"MEMKIT_CACHE_DIR to a writable folder") from None
    try:
        _convert(path, work, shown)
        (work / MARKER).write_text(json.dumps({
            "sha256": digest, "file": path.name, "bytes": path.stat().st_size,
            "seconds": round(time.monotonic() - started, 1)}, indent=2), "utf-8")
        try:
            os.replace(work, target)
        except OSError:  # another process finished first: keep its copy when it is whole
            if gguf_digest(target) != DIGEST_PREFIX + digest:
                shutil.rmtree(target, ignore_errors=True)
                os.replace(work, target)
    except OSError as exc:  # a full disk or a read-only cache, while writing the converted model
        raise ModelLoadError(f"cannot write the converted {shown} under {target.parent} ({exc.strerror or exc}); "
                             f"free space there or set MEMKIT_CACHE_DIR to another folder") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("%s: converted in %.0f s", shown, time.monotonic() - started)
    return target


@contextmanager
def _no_tensor_progress() -> Iterator[None]:
    """transformers shows a tqdm bar of its own while it dequantizes (outside its logging switches); memkit says
    one line instead."""
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    original = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = original


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _remove_abandoned(models: Path) -> None:
    """Delete the work folders of conversions whose process is gone (killed midway: up to a GB each)."""
    for folder in models.glob(".gguf-*-*"):
        pid = folder.name.split("-")[1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _convert(path: Path, out: Path, shown: str) -> None:
    """Read the file with transformers and write what ``from_pretrained`` reads back (no quantization left)."""
    import torch
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from memkit.loading import one_line, quiet_transformers

    arch = _architecture(path)
    with quiet_transformers(), _no_tensor_progress():
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
            model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        except Exception as exc:  # transformers raises many kinds; one line says which architecture failed
            reason = one_line(exc)
            if "not supported" in reason.lower() or "unrecognized" in reason.lower():
                raise ModelLoadError(f"{shown}: transformers cannot read GGUF architecture {arch or '(unknown)'!r} "
                                     f"({reason})") from None
            raise ModelLoadError(f"could not read the GGUF file {shown}: {reason}") from None
    config = model.config
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attr):
            delattr(config, attr)
    config.save_pretrained(out)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(out)
    save_model(model, str(out / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(out)
