"""The serve benchmark's HTTP side: the clients, the closed-loop load, and following an ingest job.

Owns: ``http_client`` (a client of its own, never a proxy, one SSL context shared), ``first_answer`` (spawn to
listening and to a first answer), ``ingest_job`` (an ingest job submitted and followed at ``/jobs/{id}``),
``Load`` (N closed-loop clients and what the answers of a time window say: throughput, latency percentiles,
batch sizes, exact match), ``load_level``, ``ingest_under_load`` and ``answer_consistency``. Knows the HTTP API
from outside (httpx), not the server's code; a ``ServerProcess`` only for its URL, output and exit.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from experiments.bench.serve_common import COLLECTION, BenchError, log
from experiments.bench.serve_process import ServerProcess

UNFINISHED = ("queued", "running")

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
        from memkit.datasets.metrics import exact_match, percentile

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
