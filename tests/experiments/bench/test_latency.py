"""The interleaved latency comparison: every method answers the same questions in every round."""

from __future__ import annotations

import pytest

from benchhelpers import FAST_OPTIONS
from experiments.bench.config import BenchConfig
from experiments.bench.latency import compare_latency
from memkit.errors import ConfigError


def test_rounds_compare_each_method_with_the_reference_on_the_same_questions(tiny_lm, bench):
    options = {"closed_book": FAST_OPTIONS["closed_book"], "rag": FAST_OPTIONS["rag"]}
    cfg = BenchConfig(methods=["closed", "rag"], seed=0, batch_size=2, method_options=options)
    lines: list[str] = []
    result = compare_latency(bench, tiny_lm, cfg, n_questions=3, rounds=2, warmup=1, log=lines.append)
    assert result["reference"] == "closed_book" and result["questions"] == 3 and result["rounds"] == 2
    closed, rag = result["methods"]
    assert closed["ratio_to_reference"] == [1.0, 1.0] and closed["median_ratio"] == 1.0
    assert len(rag["p50_ms"]) == 2 and all(p > 0 for p in rag["p50_ms"])
    want = [round(r / c, 3) for r, c in zip(rag["p50_ms"], closed["p50_ms"])]
    assert rag["ratio_to_reference"] == pytest.approx(want, abs=2e-3)
    assert sum(line.startswith("round") for line in lines) == 2
    with pytest.raises(ConfigError, match="round"):
        compare_latency(bench, tiny_lm, cfg, n_questions=3, rounds=0)
