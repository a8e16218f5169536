"""``memkit serve`` under load, on loopback, against one ``memkit ask`` process per question.

For every method (``--methods rag,adapter``) a fresh temporary store is made (``memkit init``) and filled with
the first ``--n-docs`` documents of the synthetic world (seed ``--seed``) through a first server run. Then:

1. the baseline: ``memkit ask`` as one process per question, ``--baseline-questions`` of them in sequence
   (no server running): mean wall seconds per question and its throughput, 1 / mean;
2. a second server is spawned: seconds from spawn to its "memkit serving" line and to a first answer;
3. closed-loop load, for each N of ``--clients``: N asyncio clients, one connection each, each sending the next
   question (cycling over the world's questions about the stored documents) as soon as it has its answer;
   after ``--warmup`` seconds, the answers completed in the next ``--duration`` seconds give throughput
   (answers/s), p50/p99 latency and the mean ``batch_size`` the server reports;
4. ingest: ``--ingest-docs`` fresh documents ingested alone (a job, followed at ``/jobs/{id}``), then as many
   other fresh documents while N = ``--ingest-clients`` clients ask: the asks' throughput and p99 during the
   ingest, and the job's documents/s during the load, each against its own number alone.

Targets: throughput at 16 clients >= 20x the baseline's; p99 at 16 clients <= 5x p50 at 1 client. The client
runs on the same machine as the server (loopback), so on a small machine they share its cores.

    python -m experiments.bench.serve --methods rag,adapter --clients 1,4,16,64 --duration 20 --out serve.json
    python -m experiments.bench.serve --quick --methods rag            # a smoke run of ~30 s

Owns: the benchmark's command line, spawning and stopping the server, the load generator, the JSON result and
its markdown table. Knows the CLI and the HTTP API from outside (subprocesses and httpx), not their code.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
COLLECTION = "default"
TARGET_SPEEDUP = 20.0      # throughput at the target level / baseline throughput, at least
TARGET_TAIL = 5.0          # p99 at the target level / p50 at 1 client, at most
TARGET_CLIENTS = 16
LISTENING = re.compile(r"memkit serving .* at http://(\[[^\]]+\]|[^\s:/]+):(\d+)")
PROBLEM = re.compile(r"\b(ERROR|Traceback|Exception|error:)", re.IGNORECASE)
UNFINISHED = ("queued", "running")

QUICK = {"n_docs": 20, "ingest_docs": 16, "duration": 1.0, "warmup": 0.5, "clients": "1,4",
         "baseline_questions": 1}
DEFAULTS = {"n_docs": 200, "ingest_docs": 400, "duration": 20.0, "warmup": 3.0, "clients": "1,4,16,64",
            "baseline_questions": 5}


class BenchError(RuntimeError):
    """A step of the benchmark failed; the message says which and, for the server, its output's tail."""


def log(line: str) -> None:
    print(f"[serve-bench {time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


# ---- the world ------------------------------------------------------------------------------------------------
@dataclass
class Workload:
    stored: list[dict]          # ingested before the measurements
    questions: list[dict]       # {"question", "answers"} about the stored documents, seeded order
    ingest_alone: list[dict]    # fresh documents, ingested with no load
    ingest_loaded: list[dict]   # other fresh documents, ingested during the load


def world_workload(seed: int, n_docs: int, ingest_docs: int, max_questions: int = 1000) -> Workload:
    """The synthetic world's test split (``experiments.bench.benchmarks.load("world", seed=...)``): its first
    ``n_docs`` documents (timestamp order) to store, the questions they answer (a seeded sample), and two
    disjoint sets of ``ingest_docs`` later documents."""
    from experiments.bench import benchmarks

    bench = benchmarks.load("world", seed=seed)
    need = n_docs + 2 * ingest_docs
    if len(bench.documents) < need:
        raise BenchError(f"the world (seed {seed}) has {len(bench.documents)} documents; --n-docs {n_docs} and "
                         f"2 x --ingest-docs {ingest_docs} need {need}")

    def doc(d) -> dict:
        out = {"text": d.text, "id": d.id}
        if d.timestamp:
            out["timestamp"] = d.timestamp
        if d.source:
            out["source"] = d.source
        return out

    docs = [doc(d) for d in bench.documents[:need]]
    held = {d.id for d in bench.documents[:n_docs]}
    asked = [{"question": q.question, "answers": list(q.answers)} for q in bench.questions
             if q.doc_ids and set(q.doc_ids) <= held]
    if not asked:
        raise BenchError(f"no question of the world is answered by its first {n_docs} documents")
    random.Random(seed).shuffle(asked)
    return Workload(stored=docs[:n_docs], questions=asked[:max_questions],
                    ingest_alone=docs[n_docs:n_docs + ingest_docs], ingest_loaded=docs[n_docs + ingest_docs:need])


# ---- processes --------------------------------------------------------------------------------------------------
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
                 grace: float = 45.0):
        self.cmd = cli(store, device, "serve", "--port", "0", "--log-level", "warning", *extra)
        self.threads = threads
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

    def start(self) -> "ServerProcess":
        self.spawned = time.perf_counter()
        self.proc = subprocess.Popen(self.cmd, cwd=REPO, env=child_env(self.threads), stdin=subprocess.DEVNULL,
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


# ---- HTTP -------------------------------------------------------------------------------------------------------
_SSL = None


def http_client(timeout: float, connections: int = 1):
    """A client of its own (``connections`` connections); never a proxy. One SSL context is shared: making one
    per client costs ~15 ms of CPU each, which 64 clients would take from the server."""
    import ssl

    import httpx

    global _SSL
    if _SSL is None:
        _SSL = ssl.create_default_context()
    return httpx.AsyncClient(timeout=timeout, trust_env=False, verify=_SSL,
                             limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections))


async def first_answer(server: ServerProcess, question: str, timeout: float) -> dict:
    """Spawn to listening and to the first answer (asked again until one comes back), in seconds."""
    import httpx

    listening = await asyncio.to_thread(server.wait_listening, timeout)
    end = time.monotonic() + timeout
    tries, last = 0, ""
    async with http_client(60) as http:
        while True:
            tries += 1
            t = time.perf_counter()
            try:
                r = await http.post(f"{server.url}/collections/{COLLECTION}/ask", json={"question": question})
                if r.status_code == 200:
                    done = time.perf_counter()
                    return {"listening_s": round(listening, 3), "first_answer_s": round(done - server.spawned, 3),
                            "first_request_ms": round((done - t) * 1000, 3), "tries": tries,
                            "answer": r.json().get("answer")}
                last = f"HTTP {r.status_code}: {r.text[:300]}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if server.proc.poll() is not None:
                raise BenchError(f"the server exited with {server.proc.returncode} before answering:\n{server.tail()}")
            if time.monotonic() > end:
                raise BenchError(f"no answer within {timeout:.0f} s (last: {last}):\n{server.tail()}")
            await asyncio.sleep(0.05)


async def ingest_job(url: str, docs: list[dict], *, timeout: float, poll_s: float = 0.25,
                     progress: bool = False) -> dict:
    """Submits ``docs`` as an ingest job (no wait) and follows it until it ends or ``timeout`` seconds pass.
    The job's own documents/s (processed / its running seconds) and the client's (documents / seconds from
    submit to the end seen) are both reported."""
    async with http_client(300) as http:
        t0 = time.perf_counter()
        r = await http.post(f"{url}/collections/{COLLECTION}/documents", json=docs)
        if r.status_code not in (200, 202):
            raise BenchError(f"ingest refused: HTTP {r.status_code}: {r.text[:500]}")
        job = r.json()
        last_log = time.monotonic()
        while job.get("status") in UNFINISHED and time.perf_counter() - t0 < timeout:
            await asyncio.sleep(poll_s)
            r = await http.get(f"{url}/jobs/{job['id']}")
            if r.status_code != 200:
                raise BenchError(f"GET /jobs/{job['id']}: HTTP {r.status_code}: {r.text[:300]}")
            job = r.json()
            if progress and time.monotonic() - last_log > 10:
                log(f"  ingest {job.get('processed', 0)}/{len(docs)} ({job.get('documents_per_second')} docs/s)")
                last_log = time.monotonic()
        wall = time.perf_counter() - t0
    finished = job.get("status") not in UNFINISHED
    return {"job_id": job["id"], "status": job.get("status"), "error": job.get("error"), "documents": len(docs),
            "processed": job.get("processed"), "added": job.get("added"), "duplicates": job.get("duplicates"),
            "refused": job.get("refused"), "job_seconds": job.get("seconds"),
            "documents_per_second": job.get("documents_per_second"),
            "client_documents_per_second": round(job.get("processed", 0) / wall, 3) if wall > 0 else None,
            "client_seconds": round(wall, 3), "timed_out": not finished,
            "_t_submit": t0, "_t_end": t0 + wall}


# ---- the load ---------------------------------------------------------------------------------------------------
@dataclass
class Sample:
    done: float
    latency: float
    batch: int
    question: int
    answer: str
    server_ms: float | None
    queued_ms: float | None


@dataclass
class Load:
    """N closed-loop clients, one connection each, asking the next question (a shared cycle over the
    questions) as soon as they have their answer, until ``stop``."""

    url: str
    questions: list[dict]
    clients: int
    timeout: float = 120.0
    samples: list[Sample] = field(default_factory=list)
    errors: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self):
        self._next = itertools.count()
        self._stop = asyncio.Event()
        self._https = [http_client(self.timeout) for _ in range(self.clients)]
        self._tasks = [asyncio.create_task(self._client(h), name=f"client-{i}") for i, h in enumerate(self._https)]

    async def _client(self, http) -> None:
        import httpx

        url = f"{self.url}/collections/{COLLECTION}/ask"
        while not self._stop.is_set():
            qi = next(self._next) % len(self.questions)
            t = time.perf_counter()
            try:
                r = await http.post(url, json={"question": self.questions[qi]["question"]})
            except httpx.HTTPError as exc:
                self.errors.append((time.perf_counter(), f"{type(exc).__name__}: {exc}"[:300]))
                await asyncio.sleep(0.05)
                continue
            done = time.perf_counter()
            if r.status_code != 200:
                self.errors.append((done, f"HTTP {r.status_code}: {r.text[:300]}"))
                await asyncio.sleep(0.01)
                continue
            try:
                data = r.json()
                timings = data.get("timings_ms") or {}
                self.samples.append(Sample(done, done - t, int(data.get("batch_size") or 0), qi,
                                           str(data.get("answer", "")), timings.get("server"),
                                           timings.get("queued")))
            except (ValueError, TypeError, AttributeError) as exc:
                self.errors.append((done, f"bad answer body ({exc}): {r.text[:200]}"))

    async def stop(self) -> None:
        self._stop.set()
        _, pending = await asyncio.wait(self._tasks, timeout=self.timeout + 5)
        for task in pending:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for http in self._https:
            await http.aclose()

    def window(self, t0: float, t1: float) -> dict:
        """What the answers (and errors) completed between ``t0`` and ``t1`` say."""
        from experiments.bench.metrics import exact_match, percentile

        got = [s for s in self.samples if t0 <= s.done <= t1]
        errors = [e for t, e in self.errors if t0 <= t <= t1]
        seconds = t1 - t0
        out: dict[str, Any] = {"clients": self.clients, "seconds": round(seconds, 3), "answers": len(got),
                               "errors": len(errors), "errors_total": len(self.errors),
                               "error_examples": sorted({e for _, e in self.errors})[:5]}
        if not got:
            out.update(throughput=0.0, p50_ms=None, p99_ms=None, mean_ms=None, mean_batch_size=None)
            return out
        lat = [s.latency * 1000 for s in got]
        batches = [s.batch for s in got if s.batch > 0]
        server = [s.server_ms for s in got if isinstance(s.server_ms, (int, float))]
        queued = [s.queued_ms for s in got if isinstance(s.queued_ms, (int, float))]
        out.update(
            throughput=round(len(got) / seconds, 3),
            p50_ms=round(percentile(lat, 50), 3), p90_ms=round(percentile(lat, 90), 3),
            p99_ms=round(percentile(lat, 99), 3), max_ms=round(max(lat), 3), mean_ms=round(sum(lat) / len(lat), 3),
            # what each answer says (a batch of b counts b times), and per batch (n answers / sum of 1/b)
            mean_batch_size=round(sum(batches) / len(batches), 3) if batches else None,
            mean_batch_size_per_batch=round(len(batches) / sum(1 / b for b in batches), 3) if batches else None,
            max_batch_size=max(batches) if batches else None,
            server_p50_ms=round(percentile(server, 50), 3) if server else None,
            queued_p50_ms=round(percentile(queued, 50), 3) if queued else None,
            exact_match=round(100 * sum(exact_match(s.answer, self.questions[s.question]["answers"])
                                        for s in got) / len(got), 2))
        return out


async def load_level(url: str, questions: list[dict], clients: int, warmup: float, duration: float,
                     timeout: float) -> tuple[dict, Load]:
    load = Load(url, questions, clients, timeout)
    try:
        await asyncio.sleep(warmup)
        t0 = time.perf_counter()
        await asyncio.sleep(duration)
        t1 = time.perf_counter()
    finally:
        await load.stop()
    return load.window(t0, t1), load


async def ingest_under_load(url: str, questions: list[dict], clients: int, docs: list[dict], warmup: float,
                            timeout: float, request_timeout: float) -> tuple[dict, dict]:
    """``clients`` ask from ``warmup`` seconds before the job is submitted until it ends: the asks completed
    while it ran, and the job."""
    load = Load(url, questions, clients, request_timeout)
    try:
        await asyncio.sleep(warmup)
        job = await ingest_job(url, docs, timeout=timeout, progress=True)
    finally:
        await load.stop()
    asks = load.window(job.pop("_t_submit"), job.pop("_t_end"))
    return asks, job


def answer_consistency(loads: list[Load]) -> dict:
    """Questions answered differently at different times (or in batches of different sizes) on the same store:
    greedy decoding should give one answer per question."""
    seen: dict[int, dict[str, int]] = {}
    for load in loads:
        for s in load.samples:
            seen.setdefault(s.question, {}).setdefault(s.answer, s.batch)
    varying = {q: a for q, a in seen.items() if len(a) > 1}
    examples = [{"question": loads[0].questions[q]["question"],
                 "answers": [{"answer": ans, "batch_size": b} for ans, b in list(a.items())[:4]]}
                for q, a in list(varying.items())[:3]]
    return {"questions_answered": len(seen), "questions_with_varying_answers": len(varying), "examples": examples}


# ---- one method -------------------------------------------------------------------------------------------------
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


async def run_method(method: str, work: Workload, args: argparse.Namespace, clients: list[int],
                     target: int) -> dict:
    out: dict[str, Any] = {"method": method}
    tmp = Path(tempfile.mkdtemp(prefix=f"memkit-serve-bench-{method}-"))
    store = tmp / "store"
    server: ServerProcess | None = None
    try:
        t = time.perf_counter()
        run_cli(cli(store, args.device, "init", "--method", method, *args.init_arg), "memkit init", 600,
                args.threads)
        out["init_s"] = round(time.perf_counter() - t, 3)
        log(f"{method}: store made in {out['init_s']} s at {store}")

        server = ServerProcess(store, args.device, args.server_arg, args.threads).start()
        await asyncio.to_thread(server.wait_listening, args.start_timeout)
        job = await ingest_job(server.url, work.stored, timeout=args.ingest_timeout, progress=True)
        job.pop("_t_submit"), job.pop("_t_end")
        server.stop()
        out["initial_ingest"] = job
        out["initial_server"] = server.report()
        server = None
        if job["status"] != "done" or not job["added"]:
            raise BenchError(f"the initial ingest ended {job['status']} with {job['added']} added: {job['error']}")
        log(f"{method}: {job['added']} documents stored ({job['documents_per_second']} docs/s)")

        if args.baseline_questions > 0:
            log(f"{method}: baseline, {args.baseline_questions} x memkit ask")
            out["baseline"] = await asyncio.to_thread(baseline, store, args.device, work.questions,
                                                      args.baseline_questions, args.request_timeout + 600,
                                                      args.threads)
            log(f"{method}: baseline {out['baseline']['mean_s']} s per question")

        server = ServerProcess(store, args.device, args.server_arg, args.threads).start()
        out["startup"] = await first_answer(server, work.questions[0]["question"], args.start_timeout)
        log(f"{method}: first answer {out['startup']['first_answer_s']} s after spawn "
            f"(listening at {out['startup']['listening_s']} s)")

        levels, loads = [], []
        for n in clients:
            level, load = await load_level(server.url, work.questions, n, args.warmup, args.duration,
                                           args.request_timeout)
            levels.append(level)
            loads.append(load)
            log(f"{method}: {n:>3} clients: {level['throughput']} answers/s, p50 {level['p50_ms']} ms, "
                f"p99 {level['p99_ms']} ms, batch {level['mean_batch_size']}, errors {level['errors_total']}")
        out["load"] = levels
        out["answer_consistency"] = answer_consistency(loads)
        del loads

        alone = await ingest_job(server.url, work.ingest_alone, timeout=args.ingest_timeout, progress=True)
        alone.pop("_t_submit"), alone.pop("_t_end")
        log(f"{method}: ingest alone {alone['documents_per_second']} docs/s ({alone['status']})")
        level_alone = next((lv for lv in levels if lv["clients"] == target), None)
        if level_alone is None:
            level_alone, _ = await load_level(server.url, work.questions, target, args.warmup, args.duration,
                                              args.request_timeout)
        asks, loaded = await ingest_under_load(server.url, work.questions, target, work.ingest_loaded,
                                               args.warmup, args.ingest_timeout, args.request_timeout)
        log(f"{method}: ingest under {target}-client load {loaded['documents_per_second']} docs/s; asks "
            f"{asks['throughput']} answers/s, p99 {asks['p99_ms']} ms")
        out["ingest"] = {
            "clients": target, "alone": alone, "under_load": loaded, "asks_during_ingest": asks,
            "asks_alone": {k: level_alone.get(k) for k in ("clients", "throughput", "p50_ms", "p99_ms")},
            "ingest_rate_ratio": ratio(loaded["documents_per_second"], alone["documents_per_second"]),
            "ask_throughput_ratio": ratio(asks["throughput"], level_alone["throughput"]),
            "ask_p99_ratio": ratio(asks["p99_ms"], level_alone["p99_ms"]),
        }
        async with http_client(60) as http:
            r = await http.get(f"{server.url}/stats")
            out["server_stats"] = r.json() if r.status_code == 200 else {"error": f"HTTP {r.status_code}"}
        out["targets"] = targets(out, target)
    except Exception as exc:  # noqa: BLE001 - the partial result is kept, with what went wrong
        out["error"] = f"{type(exc).__name__}: {exc}"
        log(f"{method} failed: {out['error']}")
    finally:
        if server is not None:
            server.stop()
            out["server"] = server.report()
        if args.keep:
            out["store"] = str(store)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def ratio(a, b) -> float | None:
    return round(a / b, 3) if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None


def targets(result: dict, target: int) -> dict:
    by = {lv["clients"]: lv for lv in result.get("load", [])}
    at, one = by.get(target, {}), by.get(1, {})
    base = result.get("baseline", {}).get("throughput")
    speedup = ratio(at.get("throughput"), base)
    tail = ratio(at.get("p99_ms"), one.get("p50_ms"))
    return {
        "clients": target,
        "speedup": {"value": speedup, "target": TARGET_SPEEDUP, "what": f"throughput at {target} clients / "
                                                                        f"memkit ask baseline throughput (>=)",
                    "pass": speedup is not None and speedup >= TARGET_SPEEDUP},
        "tail": {"value": tail, "target": TARGET_TAIL, "what": f"p99 at {target} clients / p50 at 1 client (<=)",
                 "pass": tail is not None and tail <= TARGET_TAIL},
    }


# ---- reporting --------------------------------------------------------------------------------------------------
def fmt(x, nd: int = 1) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def markdown(result: dict) -> str:
    lines = [f"## memkit serve benchmark (seed {result['seed']}, {result['machine']['cpu_count']} CPUs, "
             f"{result['config']['n_docs']} documents)", "",
             "| method | clients | answers/s | p50 ms | p99 ms | mean batch | errors | EM % |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in result["methods"].items():
        for lv in m.get("load", []):
            lines.append(f"| {name} | {lv['clients']} | {fmt(lv['throughput'])} | {fmt(lv['p50_ms'])} | "
                         f"{fmt(lv['p99_ms'])} | {fmt(lv.get('mean_batch_size'), 2)} | {lv['errors_total']} | "
                         f"{fmt(lv.get('exact_match'))} |")
    lines += ["", "| method | first answer s | baseline s/question | speedup | target | p99/p50(1) | target | "
                  "ingest docs/s alone | under load | asks/s during ingest | p99 ms during ingest |",
              "|---|---:|---:|---:|---|---:|---|---:|---:|---:|---:|"]
    for name, m in result["methods"].items():
        if "error" in m:
            lines.append(f"| {name} | error: {m['error'].splitlines()[0][:120]} |||||||||")
            continue
        t, ing = m["targets"], m["ingest"]
        sp, tl = t["speedup"], t["tail"]
        lines.append(
            f"| {name} | {fmt(m['startup']['first_answer_s'], 2)} | {fmt(m.get('baseline', {}).get('mean_s'), 2)} | "
            f"{fmt(sp['value'])}x | {'PASS' if sp['pass'] else 'MISS'} (>= {sp['target']:g}x at {t['clients']}) | "
            f"{fmt(tl['value'], 2)}x | {'PASS' if tl['pass'] else 'MISS'} (<= {tl['target']:g}x) | "
            f"{fmt(ing['alone']['documents_per_second'])} | {fmt(ing['under_load']['documents_per_second'])} | "
            f"{fmt(ing['asks_during_ingest']['throughput'])} (alone {fmt(ing['asks_alone']['throughput'])}) | "
            f"{fmt(ing['asks_during_ingest']['p99_ms'])} (alone {fmt(ing['asks_alone']['p99_ms'])}) |")
    return "\n".join(lines)


# ---- command line -----------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.bench.serve", description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", default="rag,adapter", help="comma-separated memkit init methods")
    p.add_argument("--seed", type=int, default=0, help="the synthetic world's seed (documents, questions, order)")
    p.add_argument("--n-docs", type=int, default=None, help=f"documents stored first (default {DEFAULTS['n_docs']})")
    p.add_argument("--clients", default=None, help=f"client counts, comma-separated (default {DEFAULTS['clients']})")
    p.add_argument("--duration", type=float, default=None,
                   help=f"measured seconds per client count (default {DEFAULTS['duration']:g})")
    p.add_argument("--warmup", type=float, default=None,
                   help=f"seconds of load before measuring (default {DEFAULTS['warmup']:g})")
    p.add_argument("--baseline-questions", type=int, default=None,
                   help=f"memkit ask processes, in sequence (default {DEFAULTS['baseline_questions']})")
    p.add_argument("--ingest-docs", type=int, default=None,
                   help=f"fresh documents per ingest measurement, alone and under load (default "
                        f"{DEFAULTS['ingest_docs']})")
    p.add_argument("--ingest-clients", type=int, default=None,
                   help=f"clients asking during the ingest, and the level of the targets (default {TARGET_CLIENTS} "
                        f"when in --clients, else the largest)")
    p.add_argument("--questions", type=int, default=1000, help="most distinct questions cycled over")
    p.add_argument("--device", default="auto", help="memkit --device for the server and the baseline")
    p.add_argument("--threads", type=int, default=None,
                   help="OMP_NUM_THREADS (torch's intra-op threads) of the server and the memkit ask processes "
                        "(default: inherited). On a small or shared machine, 1 avoids threads spinning against "
                        "the load generator and other processes")
    p.add_argument("--init-arg", action="append", default=[], help="extra argument to memkit init (repeatable), "
                                                                   "e.g. --init-arg=-o --init-arg=top_k=2")
    p.add_argument("--server-arg", action="append", default=[], help="extra argument to memkit serve "
                                                                     "(repeatable), e.g. --server-arg=--max-batch=64")
    p.add_argument("--start-timeout", type=float, default=300.0, help="seconds for a server to answer first")
    p.add_argument("--request-timeout", type=float, default=120.0, help="seconds per HTTP request")
    p.add_argument("--ingest-timeout", type=float, default=1800.0, help="seconds per ingest job")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: " + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in QUICK.items()))
    p.add_argument("--keep", action="store_true", help="keep the temporary stores (their paths are in the JSON)")
    p.add_argument("--out", default=None, help="write the JSON here (default: print it after the table)")
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def machine() -> dict:
    info = {"cpu_count": os.cpu_count(), "platform": platform.platform(), "machine": platform.machine(),
            "processor": platform.processor() or None, "python": platform.python_version()}
    try:
        info["sched_cpus"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        info["torch_threads"] = torch.get_num_threads()
    except Exception:  # noqa: BLE001 - the record is best effort
        pass
    return info


def run(args: argparse.Namespace, argv: list[str]) -> dict:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    clients = sorted({int(c) for c in str(args.clients).split(",") if c.strip()})
    if not methods or not clients or min(clients) < 1:
        raise BenchError("--methods and --clients need at least one method and one client count >= 1")
    if args.n_docs < 1 or args.ingest_docs < 1 or args.duration <= 0 or args.warmup < 0:
        raise BenchError("--n-docs and --ingest-docs must be >= 1, --duration > 0, --warmup >= 0")
    target = args.ingest_clients or (TARGET_CLIENTS if TARGET_CLIENTS in clients else max(clients))
    work = world_workload(args.seed, args.n_docs, args.ingest_docs, args.questions)
    started = time.time()
    result: dict[str, Any] = {
        "benchmark": "serve", "command": [sys.executable, "-m", "experiments.bench.serve", *argv],
        "seed": args.seed, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "machine": machine(),
        "config": {"methods": methods, "n_docs": args.n_docs, "clients": clients, "duration_s": args.duration,
                   "warmup_s": args.warmup, "baseline_questions": args.baseline_questions,
                   "ingest_docs": args.ingest_docs, "target_clients": target, "questions": len(work.questions),
                   "device": args.device, "threads": args.threads,
                   "inherited_omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                   "init_args": args.init_arg, "server_args": args.server_arg,
                   "quick": args.quick, "loopback": True,
                   "note": "the load generator runs on the same machine as the server and shares its CPUs"},
        "methods": {},
    }
    for method in methods:
        log(f"=== {method} ===")
        result["methods"][method] = asyncio.run(run_method(method, work, args, clients, target))
    result["seconds"] = round(time.time() - started, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        result = run(args, argv)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(markdown(result))
    text = json.dumps(result, indent=2, ensure_ascii=False)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
        log(f"wrote {args.out}")
    else:
        print()
        print(text)
    for name, m in result["methods"].items():
        for key in ("speedup", "tail"):
            t = m.get("targets", {}).get(key)
            if t:
                print(f"{name} {key}: {fmt(t['value'], 2)} ({t['what']} {t['target']:g}): "
                      f"{'PASS' if t['pass'] else 'MISS'}", file=sys.stderr)
    return 1 if any("error" in m for m in result["methods"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
