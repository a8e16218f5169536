"""An ingest job as the server's writer keeps it: a typed record over the store's job file (``storage.jobs``).

Owns: ``IngestJob`` (its counts, its state, its times; ``count`` adds an ingestion report, ``to_dict`` /
``from_dict`` are the job file's JSON, which ``GET /jobs`` returns as it is) and ``JOB_IDS_KEPT``. Fields this
memkit does not know (a job file of a later version) are kept as they are. Knows nothing of HTTP.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

JOB_IDS_KEPT = 10_000
"""A job lists the ids of at most this many added documents; its counts cover all."""
REFUSALS_KEPT = 100
"""A job keeps the first this many refusal messages; ``refused`` counts all."""


@dataclass
class IngestJob:
    """One ingest job: what it was given, what it has done, where it stands."""

    id: str
    collection: str = ""
    total: int = 0
    """Documents the request held (refused ones included)."""
    status: str = "queued"
    """queued, running, done, failed or interrupted."""
    kind: str = "ingest"
    processed: int = 0
    """Documents handled so far (refused ones included)."""
    added: int = 0
    """Documents stored (never one that is not)."""
    duplicates: int = 0
    memories: int = 0
    refused: int = 0
    refusals: list[str] = field(default_factory=list)
    document_ids: list[int] = field(default_factory=list)
    seconds: float | None = None
    documents_per_second: float | None = None
    error: str | None = None
    created_at: str | None = None
    created_ns: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    updated_at: str | None = None
    other: dict = field(default_factory=dict)
    """Fields of the job file this memkit does not know, kept."""

    @classmethod
    def from_dict(cls, data: dict) -> "IngestJob":
        known = {f.name for f in dataclasses.fields(cls)} - {"other"}
        job = cls(**{k: v for k, v in data.items() if k in known})
        job.other = {k: v for k, v in data.items() if k not in known}
        return job

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "other"}
        out = {k: v for k, v in out.items() if v is not None or k in ("seconds", "documents_per_second", "error")}
        return {**self.other, **out}

    def count(self, report) -> int:
        """Add an ingestion report's counts (``memkit.engine.IngestReport``); returns the documents it added."""
        self.added += len(report.added)
        self.duplicates += report.duplicates
        self.memories += report.memories
        self.refused += len(report.failed)
        self.refusals = (self.refusals + [str(e) for e in report.failed])[:REFUSALS_KEPT]
        room = JOB_IDS_KEPT - len(self.document_ids)
        self.document_ids += report.added[:max(0, room)]
        return len(report.added)
