"""What every part of the serve benchmark (``experiments.bench.serve``) shares: where the repository is, the
collection it serves, its error and its log line.

Owns: ``REPO``, ``COLLECTION``, ``BenchError`` and ``log`` (one timestamped line on stderr). Knows nothing of
processes, HTTP or the benchmark's steps.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COLLECTION = "default"


class BenchError(RuntimeError):
    """A step of the benchmark failed; the message says which and, for the server, its output's tail."""


def log(line: str) -> None:
    print(f"[serve-bench {time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)
