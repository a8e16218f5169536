"""What a running server holds: the store, the loaded models and methods, the ask batchers and the writer.

Owns: ``Runtime``, the one object behind every route. Every call into a model or the store runs on one worker
thread (``ModelWorker``), off the event loop: a frozen LM is shared by the collections built on it, and its
hooks (a method's weight delta or prefix) must not meet another call's, so model work is one queue. Asks are
batched per collection (``AskBatcher``: a batch takes every question waiting, and waits up to ``batch_wait_ms``
for more while it is smaller than the recent batches were, up to ``max_batch``; then one
``Engine.ask_many`` answers them; the next batch forms while it runs). Ingests are jobs (``storage.jobs``), run
one at a time by the writer task in chunks of the engine's batch size, so asks are answered between chunks; a
document is visible once its commit is done, never half. At most ``max_queued_bytes`` of documents wait for the
writer. Knows no HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from memkit.documents import SourceDocument
from memkit.engine import Engine, as_of_time
from server.config import ServerConfig
from server.ingest_job import REFUSALS_KEPT, IngestJob
from memkit.errors import ConflictError, NotFoundError, UnavailableError
from server.metrics import Metrics
from memkit.service.collections import engine_for, new_collection
from storage.jobs import UNFINISHED
from storage.root import StoreRoot
from storage.schema import utc_now

log = logging.getLogger("memkit.server")

INTERRUPTED = ("the server stopped before this job finished; the documents it counts as added are stored, whole; "
               "send the rest again (documents already stored are skipped as duplicates)")
CRASHED = ("the server ended before this job finished (killed or crashed); the documents it counts as added are "
           "stored, whole; send the rest again (documents already stored are skipped as duplicates)")
JOB_SAVE_EVERY_S = 1.0
"""A running job's file is rewritten at most this often (and after its last chunk)."""


class ModelWorker:
    """One thread for every model and store call; ``run(fn)`` awaits ``fn()`` there."""

    def __init__(self):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memkit-model")

    async def run(self, fn: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    def call(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` on the worker thread, from a thread that is not the event loop's (startup, shutdown)."""
        return self._pool.submit(fn).result()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


@dataclass
class Served:
    """One collection being served: its store, method and engine."""

    name: str
    store: Any
    engine: Engine
    batcher: "AskBatcher | None" = None
    deleted: bool = False


@dataclass
class _Ask:
    question: str
    top_k: int | None
    as_of: str | None
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)


class AskBatcher:
    """Questions to one collection, answered in batches by one ``Engine.ask_many`` each."""

    def __init__(self, runtime: "Runtime", served: Served):
        self.runtime = runtime
        self.served = served
        self.queue: asyncio.Queue[_Ask] = asyncio.Queue()
        self.task = asyncio.create_task(self._loop(), name=f"asks:{served.name}")

    async def ask(self, question: str, top_k: int | None, as_of: str | None):
        future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait(_Ask(question, top_k, as_of, future))
        self.runtime.metrics.queue_depth.inc()
        return await future

    async def _loop(self) -> None:
        """A batch takes every question already waiting; while it holds fewer than the recent load (the most
        questions of a batch plus those that queued while it ran, over the last 8 batches), it waits for more, at
        most ``batch_wait_ms`` from when it began to form. So one client's questions never wait, and many
        clients' fill a batch."""
        cfg = self.runtime.config
        recent: list[int] = []
        while True:
            first = await self.queue.get()
            batch = [first]
            expect = min(cfg.max_batch, max(recent, default=1))
            deadline = time.perf_counter() + cfg.batch_wait_ms / 1000   # from now: questions that queued while
            # the last batch ran wait a moment for the ones its clients send next, so batches stay whole
            while len(batch) < cfg.max_batch:
                try:
                    batch.append(self.queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                left = deadline - time.perf_counter()
                if len(batch) >= expect or left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), left))
                except asyncio.TimeoutError:
                    break
            self.runtime.metrics.queue_depth.dec(len(batch))
            live = [a for a in batch if not a.future.done()]  # a client that went away cancelled its future
            if not live:
                continue
            groups: dict[tuple, list[_Ask]] = {}
            for a in live:
                groups.setdefault((a.top_k, a.as_of), []).append(a)
            for (top_k, as_of), asks in groups.items():
                await self._answer(asks, top_k, as_of)
            # the load the clients make: this batch and what queued while it ran (when half the clients wait
            # while the other half is answered, the next batch waits for the others to come back)
            recent = (recent + [len(batch) + self.queue.qsize()])[-8:]

    async def _answer(self, asks: list[_Ask], top_k: int | None, as_of: str | None) -> None:
        served = self.served
        self.runtime.metrics.batch_size.observe(len(asks))
        if served.deleted:
            error = NotFoundError(f"collection {served.name!r} was deleted", code="collection_not_found")
            for a in asks:
                if not a.future.done():
                    a.future.set_exception(error)
            return

        def work():
            started = time.perf_counter()
            answers = served.engine.ask_many([a.question for a in asks], top_k=top_k, as_of=as_of,
                                             batch_size=len(asks))
            ids = {s.document_id for answer in answers for s in answer.sources}
            docs = served.store.get_documents(ids) if ids else {}
            return answers, docs, started, time.perf_counter()

        try:
            answers, docs, started, ended = await self.runtime.worker.run(work)
        except Exception as exc:  # every waiting request gets the error; the batcher goes on
            for a in asks:
                if not a.future.done():
                    a.future.set_exception(exc)
            return
        for a, answer in zip(asks, answers):
            answer.timings["queued"] = (started - a.queued) * 1000      # waiting for its batch and the worker
            answer.timings["batch"] = (ended - started) * 1000          # its batch's whole answering call
            if not a.future.done():
                a.future.set_result((answer, docs, len(asks)))


class Runtime:
    """The store's collections, their models and methods, the batchers, the writer and the jobs."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.metrics = Metrics()
        self.worker = ModelWorker()
        self.root: StoreRoot | None = None
        self.models: dict[tuple[str, str | None], Any] = {}
        self.served: dict[str, Served] = {}
        self.jobs_queue: asyncio.Queue[str] | None = None
        self.writer_task: asyncio.Task | None = None
        self.running_job: str | None = None
        self.stopping = threading.Event()
        self.started = time.time()
        self._lock: asyncio.Lock | None = None
        self._inputs: dict[str, tuple[Served, list[SourceDocument], int]] = {}   # a queued job's collection,
        self.queued_bytes = 0                                   # documents and their bytes, until the writer takes them
        self.closed = False

    # ---- start and stop ------------------------------------------------------------------------------------
    def open(self) -> None:
        """Opens the store (made, empty, when ``create_store`` and it does not exist), marks the jobs a killed
        server left unfinished as interrupted, and loads every collection's model and method. Call from a thread
        that is not the event loop's (the CLI calls it before uvicorn starts, so a store that cannot be opened is
        one line)."""
        if self.root is not None:
            return
        cfg = self.config

        def open_all():
            self.root = StoreRoot.open(cfg.store, write=True, create=cfg.create_store)
            try:
                gone = self.root.jobs.interrupt_unfinished(CRASHED)
                if gone:
                    log.warning("%d ingest job(s) of an earlier run were unfinished; marked interrupted", len(gone))
                for info in self.root.collections():
                    self.served[info.name] = self._serve(info.name)
            except BaseException:
                self.root.close()
                self.root = None
                raise

        self.worker.call(open_all)

    async def start(self) -> None:
        """``open`` if not yet done, then the batchers and the writer task."""
        if self.root is None:
            await asyncio.get_running_loop().run_in_executor(None, self.open)
        self._lock = asyncio.Lock()
        for served in self.served.values():
            served.batcher = AskBatcher(self, served)
        self.jobs_queue = asyncio.Queue()
        self.writer_task = asyncio.create_task(self._writer(), name="writer")

    async def stop(self) -> None:
        """Stops the writer after its current chunk (the job is marked interrupted), fails queued asks, closes
        the store (index files saved, the writer lock released)."""
        self.stopping.set()
        try:
            if self.writer_task is not None:
                await self.writer_task
        except Exception:
            log.exception("the writer task failed")
        finally:
            for served in self.served.values():
                if served.batcher is not None:
                    served.batcher.task.cancel()
            if self.root is not None:
                try:
                    self.root.jobs.interrupt_unfinished(INTERRUPTED)
                finally:
                    await self.worker.run(self.root.close)
                    self.closed = True
            self.worker.shutdown()

    # ---- collections ---------------------------------------------------------------------------------------
    def _lm(self, model_id: str, revision: str | None):
        """The frozen LM for a model, loaded once and shared by every collection built on it (worker thread)."""
        from memkit.lm import FrozenLM

        key = (model_id, revision)
        if key not in self.models:
            log.info("loading model %s", model_id)
            self.models[key] = FrozenLM.load(model_id, revision=revision, device=self.config.device)
        return self.models[key]

    def _serve(self, name: str, method=None) -> Served:
        """Opens collection ``name`` with its model and method (``method``: already built for it; worker
        thread)."""
        store = self.root.collection(name)
        info = store.info
        engine = engine_for(store, self._lm(info.model_id, info.model_revision), batch_size=self.config.ingest_batch,
                            method=method)
        return Served(name, store, engine)

    def get(self, name: str) -> Served:
        served = self.served.get(name)
        if served is None or served.deleted:
            raise NotFoundError(f"no collection {name!r}; the server has: "
                                f"{', '.join(repr(n) for n in self.served) or 'none'}", code="collection_not_found")
        return served

    async def create_collection(self, name: str, *, model: str | None, method: str, options: dict,
                                revision: str | None) -> Served:
        from memkit.defaults import default_model
        from storage.root import check_collection_name

        check_collection_name(name)
        async with self._lock:
            if name in self.served:
                raise ConflictError(f"collection {name!r} exists", code="collection_exists")
            model_id = model or default_model()
            self.config.check_paths(model_id, options, known=[i for i, _ in self.models])

            def make():
                lm = self._lm(model_id, revision)
                made = new_collection(lm, method, options, revision=revision)   # the model resolved, as init
                self.root.create_collection(name, **made.spec)
                return self._serve(name, made.method)

            served = await self.worker.run(make)
            served.batcher = AskBatcher(self, served)
            self.served[name] = served              # on the event loop, once it can take questions
            return served

    async def delete_collection(self, name: str) -> int:
        async with self._lock:
            served = self.get(name)
            if self.running_job is not None:
                job = self._job(self.running_job)
                if job is not None and job.collection == name:
                    raise ConflictError(f"an ingest job ({job.id}) is running for collection {name!r}; wait "
                                        f"for it to finish", code="collection_busy")
            served.deleted = True        # questions still queued for it are answered 404 by its batcher
            try:
                n = await self.worker.run(lambda: self.root.drop_collection(name))
            except BaseException:
                served.deleted = False
                raise
            self.served.pop(name, None)
            return n

    # ---- asks ----------------------------------------------------------------------------------------------
    async def ask(self, name: str, question: str, top_k: int | None, as_of: str | None):
        served = self.get(name)
        return await served.batcher.ask(question, top_k, as_of_time(as_of))

    # ---- ingest jobs ---------------------------------------------------------------------------------------
    def check_room(self, size: int) -> None:
        """503 when the server is stopping, or when ``size`` more bytes of documents would pass what may wait
        for the writer (``max_queued_bytes``)."""
        if self.stopping.is_set():
            raise UnavailableError("the server is stopping; send the documents again once it is back",
                                   code="server_stopping")
        if self.queued_bytes and self.queued_bytes + size > self.config.max_queued_bytes:
            raise UnavailableError(f"the ingest queue is full ({self.queued_bytes} bytes of documents wait for the "
                                   f"writer); send these again once GET /jobs shows it has drained", code="queue_full")

    def submit(self, name: str, docs: list[SourceDocument], refusals: list[str], refused: int,
               size: int) -> IngestJob:
        """Queues an ingest job of ``docs`` (``size`` bytes of text) into collection ``name``; ``refused``
        documents of the request were refused (``refusals``: the first messages). Returns the job as saved."""
        served = self.get(name)
        self.check_room(size)
        fresh = IngestJob(id="", collection=name, total=len(docs) + refused, processed=refused, refused=refused,
                          refusals=refusals[:REFUSALS_KEPT]).to_dict()
        job = IngestJob.from_dict(self.root.jobs.new(**{k: v for k, v in fresh.items() if k not in ("id", "status")}))
        self._inputs[job.id] = (served, docs, size)
        self.queued_bytes += size
        self.jobs_queue.put_nowait(job.id)
        return job

    def _job(self, job_id: str) -> IngestJob | None:
        """The job's record as its file holds it, or None."""
        data = self.root.jobs.get(job_id)
        return None if data is None else IngestJob.from_dict(data)

    async def _writer(self) -> None:
        """Runs the queued ingest jobs one at a time, in chunks, until the server stops; then marks the jobs
        still queued interrupted."""
        while not self.stopping.is_set():
            try:
                job_id = await asyncio.wait_for(self.jobs_queue.get(), 0.2)
            except asyncio.TimeoutError:
                continue
            served, docs, size = self._inputs.pop(job_id)
            self.queued_bytes -= size
            self.running_job = job_id
            try:
                await self._run_job(job_id, served, docs)
            except Exception as exc:  # the job says what went wrong; the writer goes on with the next one
                log.exception("ingest job %s failed", job_id)
                self._end(job_id, "failed", str(exc) or type(exc).__name__)
            finally:
                self.running_job = None
        while not self.jobs_queue.empty():
            job_id = self.jobs_queue.get_nowait()
            self._inputs.pop(job_id, None)
            self._end(job_id, "interrupted", INTERRUPTED)

    def _end(self, job_id: str, status: str, error: str) -> None:
        try:
            job = self._job(job_id) or IngestJob(id=job_id)
            job.status, job.error, job.finished_at = status, error, utc_now()
            self.root.jobs.save(job.to_dict())
        except Exception:  # the job file cannot be written: the log says so, the writer goes on
            log.exception("could not record ingest job %s as %s", job_id, status)

    async def _run_job(self, job_id: str, served: Served, docs: list[SourceDocument]) -> None:
        jobs = self.root.jobs
        job = self._job(job_id)

        async def save() -> None:
            await asyncio.to_thread(jobs.save, job.to_dict())

        if served.deleted or self.served.get(job.collection) is not served:   # deleted (and perhaps made anew)
            job.status, job.error, job.finished_at = "failed", f"collection {job.collection!r} was deleted", utc_now()
            await save()
            return
        job.status, job.started_at = "running", utc_now()
        await save()
        start, saved = time.perf_counter(), time.perf_counter()
        step = max(1, served.engine.batch_size)
        # one ingestion for the whole job: chunks are encoded between asks, and written write_batch documents
        # at a time (one transaction, segment file and index update each), not a chunk at a time
        ingestion = served.engine.ingestion()
        for at in range(0, len(docs), step):
            if self.stopping.is_set():
                self.metrics.ingested.inc(job.count(await self.worker.run(ingestion.close)))   # encoded: written
                job.status, job.error, job.finished_at = "interrupted", INTERRUPTED, utc_now()
                await save()
                return
            chunk = docs[at:at + step]
            self.metrics.ingested.inc(job.count(await self.worker.run(lambda: ingestion.add(chunk))))
            job.processed += len(chunk)
            elapsed = time.perf_counter() - start
            job.seconds = round(elapsed, 3)
            done = at + len(chunk)
            job.documents_per_second = round(done / elapsed, 3) if elapsed > 0 else None
            if time.perf_counter() - saved >= JOB_SAVE_EVERY_S:
                await save()
                saved = time.perf_counter()
        self.metrics.ingested.inc(job.count(await self.worker.run(ingestion.close)))
        job.seconds = round(time.perf_counter() - start, 3)
        job.status, job.finished_at = "done", utc_now()
        await save()

    async def wait_job(self, job_id: str, timeout: float) -> dict:
        """The job once it is finished, or as it stands after ``timeout`` seconds."""
        end = time.monotonic() + timeout
        while True:
            job = await asyncio.to_thread(self.root.jobs.get, job_id)
            if job is None or IngestJob.from_dict(job).status not in UNFINISHED or time.monotonic() >= end:
                return job
            await asyncio.sleep(0.1)

    # ---- what /stats says ----------------------------------------------------------------------------------
    async def stats(self) -> dict:
        def collect():
            return {name: s.store.stats() for name, s in self.served.items() if not s.deleted}

        collections = await self.worker.run(collect)
        sample = self.metrics.registry.get_sample_value
        batches = sample("memkit_ask_batch_size_count") or 0
        questions = sample("memkit_ask_batch_size_sum") or 0
        return {
            "store": str(Path(self.config.store).resolve()),
            "uptime_s": round(time.time() - self.started, 3),
            "collections": collections,
            "models_loaded": [m for m, _ in self.models],
            "ask_queue_depth": sum(s.batcher.queue.qsize() for s in self.served.values() if s.batcher),
            "batches": int(batches),
            "mean_batch_size": round(questions / batches, 3) if batches else None,
            "running_job": self.running_job,
            "queued_jobs": self.jobs_queue.qsize() if self.jobs_queue else 0,
        }
