"""Dataset loaders: one module per dataset (the public ones, and memkit's own ``english`` set), each turning
local files into a ``Benchmark``.

Owns: the ``LOADERS`` table (dataset name -> loader) and ``load_benchmark``, the one entry point the runner
and the CLI call. It refuses an unknown dataset, a missing path, an unknown option and a benchmark that
does not validate, always with a ``ValueError`` (``DatasetError``) naming the dataset, the path and what
was expected. Knows nothing of models, methods or storage; reads local files only, never the network.
The file layouts and mappings are documented in ``docs/datasets.md``.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Callable

from memkit.datasets.records import Benchmark
from memkit.datasets.loaders import archivalqa, english, metaicl, msc, squad, streamingqa
from memkit.datasets.loaders.common import DatasetError, require_path

Loader = Callable[..., Benchmark]

LOADERS: dict[str, Loader] = {
    "squad": squad.load,
    "streamingqa": streamingqa.load,
    "archivalqa": archivalqa.load,
    "msc": msc.load,
    "metaicl": metaicl.load,
    "english": english.load,
}

EXPECTED: dict[str, str] = {
    "squad": squad.EXPECTED,
    "streamingqa": streamingqa.EXPECTED,
    "archivalqa": archivalqa.EXPECTED,
    "msc": msc.EXPECTED,
    "metaicl": metaicl.EXPECTED,
    "english": english.EXPECTED,
}


def options_of(name: str) -> list[str]:
    """The keyword options a dataset's loader accepts (``limit`` among them)."""
    params = inspect.signature(LOADERS[name]).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def load_benchmark(name: str, path: str | Path, **options) -> Benchmark:
    """Load dataset ``name`` from the local ``path`` with loader ``options``; the result is validated."""
    if name not in LOADERS:
        raise DatasetError(str(name), path, "unknown dataset", expected=f"one of: {', '.join(LOADERS)}")
    require_path(name, path, EXPECTED[name])
    accepted = options_of(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise DatasetError(name, path, f"unknown option {unknown[0]!r}",
                           expected=f"options among: {', '.join(accepted)}")
    benchmark = LOADERS[name](path, **options)
    try:
        benchmark.validate()
    except ValueError as exc:
        raise DatasetError(name, path, f"the loaded benchmark is inconsistent ({exc})",
                           expected=EXPECTED[name]) from None
    return benchmark


__all__ = ["LOADERS", "EXPECTED", "DatasetError", "load_benchmark", "options_of"]
