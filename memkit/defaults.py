"""The embedded default model: where it lives inside the package and how to ask for it.

Owns: the location of the world LM packaged with memkit. It arrives with the world-LM recipe; until it is
packaged, asking for the default fails with a line that says to pass a model. Never falls back to anything.
"""

from __future__ import annotations

from memkit.errors import ConfigError
from memkit.packaged import MARKERS, WORLD_LM

PACKAGED_MODEL = WORLD_LM


def default_model() -> str:
    """The packaged world LM's directory, or a ConfigError when this build carries none."""
    if (PACKAGED_MODEL / MARKERS[WORLD_LM]).is_file():
        return str(PACKAGED_MODEL)
    raise ConfigError("this memkit carries no packaged default model yet; "
                      "pass one with --model NAME_OR_PATH")
