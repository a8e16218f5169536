"""Checking a store and mending what can be mended without the documents' sources.

Owns: ``verify`` (the database's own check, blobs, method states, leftovers, the index file; telling a live
writer's work in progress from damage), ``remove_orphans`` (what interrupted writes leave: blobs no memory
references, temp files of atomic writes) and ``index_needs_rebuild``. The checks themselves are ``health``'s;
this module decides what they mean while another process may be writing. Knows nothing of models.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from storage import health, queries
from storage.blobs import BlobStore
from storage.database import database_writer, integrity_problems
from storage.layout import StoreLayout
from storage.lock import WriterLock
from storage.state import StateFiles
from storage.types import HealthReport


def verify(session: Callable[[], Session], engine: Engine, collection_id: int, blobs: BlobStore,
           states: StateFiles, index_file: Path, lock: WriterLock, pending: list[str], *, writer: bool,
           check_blobs: bool, sample: int) -> HealthReport:
    """The health of one collection. ``writer``: the caller holds the writer lock, so nothing else writes.
    Otherwise the lock is probed before and after the checks; while another process holds it, a lagging index
    file and unreferenced blobs are its work in progress (a note), and a blob whose row it removed meanwhile
    is no damage. An unreferenced blob listed in ``pending`` (``write.pending``, with the temp files of its
    atomic write) was left by a writer that died before its commit: a note, since the next writer deletes it."""
    report = HealthReport()
    report.writer_pid = None if writer else _other_writer(lock, engine)
    derived = HealthReport()  # the findings a writer's work in progress would disturb
    with session() as s:
        damaged = health.blob_problems(s, collection_id, blobs, check_blobs)
        if report.writer_pid is None:
            orphans = health.orphan_blobs(s, blobs)
            listed = set(pending)
            derived.notes += [f"blob file {rel} was being written when a writer stopped, before its commit; the "
                              f"next write deletes it (so does {health.REPAIR})" for rel in orphans if rel in listed]
            derived.problems += [f"orphan blob file {rel} is referenced by no memory; {health.REPAIR} deletes it"
                                 for rel in orphans if rel not in listed]
            problems, notes = health.index_check(s, collection_id, index_file, sample)
            derived.problems += problems
            derived.notes += notes
    if report.writer_pid is None and not writer:
        report.writer_pid = _other_writer(lock, engine)  # one that began during the check: its traces are no damage
    if report.writer_pid is not None and damaged:
        with session() as s:
            alive = queries.existing_memories(s, [memory_id for memory_id, _ in damaged])
        damaged = [(m, line) for m, line in damaged if m in alive]
    report.problems += [line for _, line in damaged]
    report.problems += [f"database: {line}; restore it from a backup" for line in integrity_problems(engine)]
    if check_blobs:
        report.problems += states.problems()
    if report.writer_pid is None:
        report.problems += derived.problems
        report.notes += derived.notes
    else:
        who = f"pid {report.writer_pid}" if report.writer_pid else "another process"
        report.notes.append(f"{who} is writing the store: the index file and unreferenced blobs were not "
                            f"checked (they are work in progress); run doctor again when it finishes")
    return report


def _other_writer(lock: WriterLock, engine: Engine) -> int | None:
    """The pid of a process writing the store now: by the store directory's lock file, or (PostgreSQL) by the
    database's writer lock, which a writer on another machine holds too (0 when it gave no pid)."""
    pid = lock.holder()
    return pid if pid is not None else database_writer(engine)


def remove_orphans(session: Callable[[], Session], blobs: BlobStore, layout: StoreLayout,
                   state_root: Path) -> list[str]:
    """Deletes blobs no memory references and temp files of atomic writes; their paths, relative to the store.
    The caller must hold the writer lock."""
    with session() as s:
        orphans = health.orphan_blobs(s, blobs)
    for rel in orphans:
        blobs.remove_stray(rel)
    temps = [p for folder in (layout.index_dir, state_root, layout.root) if folder.is_dir()
             for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp") and p.is_file()]
    for p in temps:
        p.unlink(missing_ok=True)
    return orphans + [p.relative_to(layout.root).as_posix() for p in temps]


def index_needs_rebuild(session: Callable[[], Session], collection_id: int, index_file: Path) -> bool:
    """Whether the index file is missing, stale, damaged or disagrees with SQL."""
    with session() as s:
        problems, notes = health.index_check(s, collection_id, index_file)
    return bool(problems or notes)
