"""The memkit processes the serve benchmark runs: ``memkit serve`` in a child process, and ``memkit ask`` as one
process per question (the baseline).

Owns: a memkit child's environment and command line (``child_env``, ``cli``, ``run_cli``), ``ServerProcess``
(spawned with ``--port 0``, its output read by a thread, its port from the line it prints once listening, stopped
with SIGTERM and then killed) and ``baseline``. Knows the CLI from outside (subprocesses), not its code; knows
nothing of HTTP or the load.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

from experiments.bench.serve_common import REPO, BenchError, log

LISTENING = re.compile(r"memkit serving .* at http://(\[[^\]]+\]|[^\s:/]+):(\d+)")
PROBLEM = re.compile(r"\b(ERROR|Traceback|Exception|error:)", re.IGNORECASE)


def child_env(threads: int | None = None) -> dict:
    """The environment of a memkit process; ``threads``: its OMP/MKL threads (None: inherited)."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env["COLUMNS"] = "1000"          # rich wraps at the terminal's width: keep the "serving" line whole
    env["PYTHONUNBUFFERED"] = "1"
    env["NO_COLOR"] = "1"
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def cli(store: Path, device: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", "--store", str(store), "--device", device, *args]


def run_cli(cmd: list[str], what: str, timeout: float, threads: int | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=REPO, env=child_env(threads), capture_output=True, text=True, errors="replace",
                          timeout=timeout)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise BenchError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    return proc


class ServerProcess:
    """``memkit serve --port 0`` in a child process: its output read by a thread, its port from the line it
    prints once listening; ``stop`` sends SIGTERM, then kills it if it has not ended after ``grace`` seconds."""

    def __init__(self, store: Path, device: str, extra: list[str], threads: int | None = None,
                 grace: float = 45.0, env: dict | None = None):
        self.cmd = cli(store, device, "serve", "--port", "0", "--log-level", "warning", *extra)
        self.threads = threads
        self.env = dict(env or {})
        self.grace = grace
        self.proc: subprocess.Popen | None = None
        self.lines: deque[str] = deque(maxlen=400)
        self.problems: list[str] = []
        self.port: int | None = None
        self.spawned = 0.0
        self.listening_at: float | None = None
        self.returncode: int | None = None
        self._listening = threading.Event()
        self._reader: threading.Thread | None = None

    def environment(self) -> dict:
        """The server's environment: a memkit child's (``child_env``) with this server's own settings over it."""
        return {**child_env(self.threads), **self.env}

    def start(self) -> "ServerProcess":
        self.spawned = time.perf_counter()
        self.proc = subprocess.Popen(self.cmd, cwd=REPO, env=self.environment(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        self._reader = threading.Thread(target=self._read, name="server-output", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            if PROBLEM.search(line) and len(self.problems) < 200:
                self.problems.append(line)
            if self.port is None:
                m = LISTENING.search(line)
                if m:
                    self.port = int(m.group(2))
                    self.listening_at = time.perf_counter()
                    self._listening.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail(self, n: int = 30) -> str:
        return "\n".join(list(self.lines)[-n:])

    def wait_listening(self, timeout: float) -> float:
        """Seconds from spawn to the "memkit serving" line; raises ``BenchError`` with the output's tail when the
        server ends or stays silent instead."""
        end = time.monotonic() + timeout
        while not self._listening.wait(0.05):
            if self.proc.poll() is not None:
                self._reader.join(2)
                raise BenchError(f"the server exited with {self.proc.returncode} before listening:\n{self.tail()}")
            if time.monotonic() > end:
                raise BenchError(f"the server did not listen within {timeout:.0f} s:\n{self.tail()}")
        return self.listening_at - self.spawned

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(self.grace)
            except subprocess.TimeoutExpired:
                log(f"the server (pid {self.proc.pid}) did not end {self.grace:.0f} s after SIGTERM; killing it")
                self.proc.kill()
                self.proc.wait()
        self.returncode = self.proc.returncode
        if self._reader is not None:
            self._reader.join(5)

    def report(self) -> dict:
        return {"returncode": self.returncode, "problem_lines": len(self.problems),
                "problems": self.problems[:20], "output_tail": list(self.lines)[-15:]}

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def baseline(store: Path, device: str, questions: list[dict], n: int, timeout: float,
             threads: int | None = None) -> dict:
    """``memkit ask`` as one process per question, in sequence."""
    walls, answers = [], []
    for q in questions[:n]:
        t = time.perf_counter()
        proc = run_cli(cli(store, device, "ask", "--json", q["question"]), "memkit ask", timeout, threads)
        walls.append(time.perf_counter() - t)
        try:
            answers.append(json.loads(proc.stdout).get("answer"))
        except ValueError:
            answers.append(None)
    mean = sum(walls) / len(walls)
    return {"questions": len(walls), "seconds": [round(w, 3) for w in walls], "mean_s": round(mean, 3),
            "throughput": round(1 / mean, 4), "answers": answers}
