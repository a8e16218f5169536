"""Which benchmark a name means: the synthetic world, or a public dataset read from local files.

Owns: ``load(name, data=..., split=..., seed=..., limit=...)``: ``world`` builds the synthetic world with the
given seed and returns its split; any other name is a dataset of ``memkit.datasets.loaders`` read from
``data`` (``english``, memkit's own English set, from its packaged folder when no ``data`` is given). Every failure is a ``ConfigError`` naming the flag to change. Knows nothing of models or methods.
"""

from __future__ import annotations

from pathlib import Path

from memkit.datasets.records import Benchmark
from memkit.errors import ConfigError

WORLD = "world"

ENGLISH_DATA = Path(__file__).resolve().parents[1] / "data" / "english"
"""memkit's own English set (``experiments/data/english/``): the ``english`` benchmark's data when no --data is given."""


def load(name: str, *, data: str | Path | None = None, split: str = "test", seed: int = 0,
         limit: int | None = None) -> Benchmark:
    """The benchmark called ``name``; see the module docstring."""
    if name == WORLD:
        return _world(split, seed, limit)
    try:
        from memkit.datasets.loaders import LOADERS, load_benchmark
    except ImportError as exc:
        raise ConfigError(f"the dataset loaders are not available in this build ({exc})") from None
    if name not in LOADERS:
        raise ConfigError(f"unknown benchmark {name!r}; choose world or one of {', '.join(LOADERS)}")
    if data is None and name == "english":   # memkit's own English set ships with memkit
        data = ENGLISH_DATA
    if data is None:
        raise ConfigError(f"benchmark {name} is read from local files; pass them with --data PATH")
    options = {} if limit is None else {"limit": limit}
    try:
        return load_benchmark(name, data, **options)
    except ValueError as exc:           # DatasetError names the dataset, path and what was expected
        raise ConfigError(str(exc)) from None


def _world(split: str, seed: int, limit: int | None) -> Benchmark:
    try:
        from experiments.world.entities import WorldConfig
        try:
            from experiments.world import load_world_benchmark
        except ImportError:
            from experiments.world.export import load_world_benchmark
    except ImportError as exc:
        raise ConfigError(f"the synthetic world is not available in this build ({exc})") from None
    try:
        bench = load_world_benchmark(WorldConfig(seed=seed), split)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if limit is not None:
        bench.questions = bench.questions[:limit]
    return bench
