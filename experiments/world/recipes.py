"""The world's training recipes: the generic ones (``memkit.recipes``) on ``--data world``, and where
their results are packaged.

Owns: ``train_adapter`` and ``train_slots`` (the world LM's packaged generator and slot models were trained
this way: training entities of fresh worlds, probed on the benchmark world's training entities; test entities
are never used), ``install_adapter`` and ``install_slots`` (copy a trained model beside the packaged world LM,
refused for another base model), ``hop_benchmarks`` and ``install_hop`` (the worlds a hop model is fitted on,
and where the world's is packaged), and the ``python -m experiments.world.recipes adapter|slots`` command line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from memkit.recipes import adapter, slots
from experiments.recipe_cli import recipe_main
from memkit.recipes.common import install_copy
from memkit.recipes.data import load_data
from experiments.world import adapter_data
from memkit.adapters.generator import CONFIG_FILE as GENERATOR_CONFIG
from memkit.adapters.train import AdapterTrainConfig
from memkit.slots.model import CONFIG_FILE as SLOTS_CONFIG
from memkit.slots.train import SlotTrainConfig


def train_adapter(lm, cfg: AdapterTrainConfig, out: Path, log=print) -> dict:
    return adapter.run(lm, cfg, load_data(["world"], seed=cfg.seed, world=adapter_data), out, log)


def train_slots(lm, cfg: SlotTrainConfig, out: Path, log=print) -> dict:
    return slots.run(lm, cfg, load_data(["world"], seed=cfg.seed, world=adapter_data), out, log)


HOP_FIT_WORLD_BASE = 20_000
HOP_FIT_WORLDS = 3
"""``world`` for a hop model: the test splits of worlds 20,001 .. 20,003 (never a benchmark world)."""


def hop_benchmarks(seed: int | None) -> list[tuple[str, object]]:
    """The named benchmarks ``world`` (``seed`` None: the fit worlds) or ``world:SEED`` stands for: each world's
    test split, whole documents, every question type (two-document ones among them)."""
    from experiments.world.entities import WorldConfig
    from experiments.world.export import load_world_benchmark

    seeds = [seed] if seed is not None else [HOP_FIT_WORLD_BASE + k for k in range(1, HOP_FIT_WORLDS + 1)]
    return [(f"world:{s}", load_world_benchmark(WorldConfig(seed=s), "test")) for s in seeds]


def install_hop(out: Path) -> Path:
    """Copy a fitted hop model into the package as the world's (``hop_model=packaged``); refused unless it was
    fitted among the world methods' keys (the lexical embedder)."""
    from memkit.embedders import LexicalEmbedder
    from memkit.errors import ConfigError
    from memkit.hops import CONFIG_FILE
    from memkit.packaged import WORLD_HOP

    fitted = json.loads((out / CONFIG_FILE).read_text()).get("config", {}).get("embedder")
    if fitted != LexicalEmbedder().describe():
        raise ConfigError(f"--install packages the world's hop model, which lives among the lexical keys; this one "
                          f"was fitted among {fitted}: keep it in {out} and point the method at it "
                          f"(-o hop_model={out})")
    return install_copy(out, WORLD_HOP, CONFIG_FILE)


def adapter_target() -> tuple[Path, str]:
    """Where ``install_adapter`` puts a generator, and its config file."""
    from memkit.packaged import WORLD_GENERATOR

    return WORLD_GENERATOR, GENERATOR_CONFIG


def slots_target(with_adapter: bool) -> tuple[Path, str]:
    """Where ``install_slots`` puts a slot model: the hybrid method's when trained with an adapter."""
    from memkit.packaged import WORLD_HYBRID_SLOTS, WORLD_SLOTS

    return (WORLD_HYBRID_SLOTS if with_adapter else WORLD_SLOTS), SLOTS_CONFIG


def install_adapter(out: Path) -> Path:
    """Copy a trained generator into the package, as the world LM's."""
    return install_copy(out, *adapter_target())


def install_slots(out: Path) -> Path:
    """Copy a trained slot model into the package, beside the world LM: as the hybrid method's when it was
    trained with an adapter, else as the slots method's."""
    trained = json.loads((out / SLOTS_CONFIG).read_text()).get("training", {})
    return install_copy(out, *slots_target(bool(trained.get("with_adapter"))))


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    which = argv.pop(0) if argv and argv[0] in ("adapter", "slots") else ""
    if which == "adapter":
        recipe_main(argv, prog="python -m experiments.world.recipes adapter", description=__doc__.split("\n")[0],
                    config_cls=AdapterTrainConfig, default_out="build/adapter-generator", run=train_adapter,
                    install=install_adapter)
    elif which == "slots":
        recipe_main(argv, prog="python -m experiments.world.recipes slots", description=__doc__.split("\n")[0],
                    config_cls=SlotTrainConfig, default_out="build/slot-model", run=train_slots,
                    install=install_slots)
    else:
        sys.exit("usage: python -m experiments.world.recipes adapter|slots [options]")


if __name__ == "__main__":
    main()
