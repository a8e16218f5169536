"""The store's job log: what long-running work (a server's ingest jobs) did, kept across restarts.

Owns: ``<store>/jobs/<id>.json``, one JSON object per job, replaced atomically (written, synced, renamed) on
every update, so a crash leaves each job's last recorded state whole. A job is a plain dict with at least ``id``
and ``status``; what else it holds is its writer's business. ``interrupt_unfinished`` marks the jobs a crashed or
killed process left ``queued`` or ``running`` as ``interrupted``. Only the oldest finished jobs past ``KEEP`` are
deleted. Knows nothing of documents, models or HTTP.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from pathlib import Path

from storage.files import read_regular, write_atomic
from storage.schema import utc_now

JOBS_DIR = "jobs"
KEEP = 1000
"""Finished jobs kept; the oldest go first."""
MAX_BYTES = 16 * 1024 * 1024
ID = re.compile(r"[0-9a-f]{16}")
UNFINISHED = ("queued", "running")


class JobLog:
    """The job files of one store."""

    def __init__(self, store_root: Path):
        self.root = Path(store_root) / JOBS_DIR

    def new(self, **fields) -> dict:
        """A new job (``status`` queued unless given), saved; returns it with its ``id`` and ``created_at``."""
        job = {"id": uuid.uuid4().hex[:16], "status": "queued", "created_at": utc_now(), "created_ns": time.time_ns(),
               **fields}
        self.save(job)
        self._prune()
        return job

    def save(self, job: dict) -> None:
        self.root.mkdir(mode=0o755, exist_ok=True)
        job["updated_at"] = utc_now()
        write_atomic(self._path(job["id"]), json.dumps(job, ensure_ascii=False).encode())

    def get(self, job_id: str) -> dict | None:
        """The job, or None when there is none by that id (or the id is not one this log makes)."""
        if not isinstance(job_id, str) or ID.fullmatch(job_id) is None:
            return None
        try:
            return json.loads(read_regular(self._path(job_id), MAX_BYTES))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None

    def all(self) -> list[dict]:
        """Every job, oldest first."""
        jobs = [self.get(p.stem) for p in self._files()]
        return sorted((j for j in jobs if j is not None), key=lambda j: (j.get("created_ns", 0), j["id"]))

    def interrupt_unfinished(self, reason: str) -> list[str]:
        """Marks every queued or running job interrupted (``error`` says why); returns their ids."""
        done = []
        for job in self.all():
            if job.get("status") in UNFINISHED:
                job.update(status="interrupted", error=reason, finished_at=utc_now())
                self.save(job)
                done.append(job["id"])
        return done

    def _path(self, job_id: str) -> Path:
        return self.root / f"{job_id}.json"

    def _files(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [p for p in self.root.iterdir() if p.suffix == ".json" and ID.fullmatch(p.stem)]

    def _prune(self) -> None:
        files = self._files()
        if len(files) <= KEEP:
            return
        finished = [j for j in self.all() if j.get("status") not in UNFINISHED]
        for job in finished[:len(files) - KEEP]:
            try:
                os.unlink(self._path(job["id"]))
            except OSError:
                pass
