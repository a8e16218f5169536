"""The models packaged with memkit, in one place: where each lives inside the package and the file that says it
is there.

Owns: the paths of the world LM (the embedded default model), of the generator, slot model and hybrid slot
model trained for it and of the world's hop model, and ``installed`` (whether this build carries one). The reference English models come from
the package registry instead (``memkit.reference``). Knows nothing of how the models are loaded or trained.
"""

from __future__ import annotations

from pathlib import Path

MODELS = Path(__file__).resolve().parent / "models"
"""The folder of every packaged model."""

WORLD_LM = MODELS / "world-lm"
"""The world LM, the embedded default model (``memkit.defaults``)."""
WORLD_GENERATOR = MODELS / "world-lm-adapter"
"""The adapter generator trained for the world LM: the ``adapter`` method's default ``generator``."""
WORLD_SLOTS = MODELS / "world-lm-slots"
"""The slot model trained for the world LM: the ``slots`` method's default ``model``."""
WORLD_HYBRID_SLOTS = MODELS / "world-lm-hybrid-slots"
"""The slot model trained with the packaged generator's adapters applied: the ``hybrid`` method's default."""
WORLD_HOP = MODELS / "world-hop"
"""The hop model fitted among the lexical keys on fresh worlds (``python -m experiments.bench.hops``):
``hop_model=packaged``."""

MARKERS = {WORLD_LM: "config.json", WORLD_GENERATOR: "generator.json", WORLD_SLOTS: "slots.json",
           WORLD_HYBRID_SLOTS: "slots.json", WORLD_HOP: "hop.json"}
"""The file each packaged model's folder holds when the model is there."""


def installed(path: Path) -> bool:
    """Whether this build carries the packaged model at ``path`` (one of this module's paths)."""
    return (path / MARKERS[path]).is_file()
