"""A resumed training run's summary counts the time its earlier processes spent, not only its own."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from memkit.recipes.common import probed_training
from memkit.training import LoopReport


@dataclass
class _Cfg:
    lr: float = 1e-3
    resume: str = ""


class _Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(3))

    @property
    def device(self):
        return self.w.device

    def save(self, out: Path, extra: dict) -> None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.json").write_text(json.dumps(extra))


def _run(tmp_path: Path, report: LoopReport) -> tuple[dict, list[str]]:
    lines: list[str] = []
    summary = probed_training(_Model(), tmp_path / "out", _Cfg(), lines.append, start=time.time(),
                              probe=lambda baselines: {"f1": 1.0}, train=lambda evaluate: report)
    return summary, lines


def test_a_resumed_run_counts_the_seconds_spent_before_its_checkpoint(tmp_path):
    summary, lines = _run(tmp_path, LoopReport(steps=9, resumed_at=5, resumed_seconds=5634.0))
    assert 5634.0 <= summary["seconds"] < 5634.0 + 60
    assert summary["resumed_at"] == 5
    assert lines[-1].endswith(f"({summary['seconds']:.0f}s in all)") and "563" in lines[-1]
    saved = json.loads((tmp_path / "out" / "training_log.json").read_text())
    assert saved["summary"]["seconds"] == summary["seconds"]


def test_a_fresh_run_counts_its_own_time_only(tmp_path):
    summary, _ = _run(tmp_path, LoopReport(steps=3))
    assert 0 <= summary["seconds"] < 60 and "resumed_at" not in summary
