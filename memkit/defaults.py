"""The embedded default model: where it lives inside the package and how to ask for it.

Owns: the location of the world LM packaged with memkit. It arrives with the world-LM recipe; until it is
packaged, asking for the default fails with a line that says to pass a model. Never falls back to anything.
"""

from __future__ import annotations

from pathlib import Path

from memkit.errors import ConfigError

PACKAGED_MODEL = Path(__file__).resolve().parent / "models" / "world-lm"


def default_model() -> str:
    """The packaged world LM's directory, or a ConfigError when this build carries none."""
    if (PACKAGED_MODEL / "config.json").is_file():
        return str(PACKAGED_MODEL)
    raise ConfigError("this memkit carries no packaged default model yet; "
                      "pass one with --model NAME_OR_PATH")
