"""The ingest job's typed record: the job file's JSON read and written back unchanged (fields of a later memkit
kept), and an ingestion report counted in without passing the kept ids and refusals."""

from __future__ import annotations

from memkit.engine import IngestReport
from memkit.errors import InputError
from server.ingest_job import JOB_IDS_KEPT, REFUSALS_KEPT, IngestJob


def test_the_job_file_round_trips_and_unknown_fields_are_kept():
    data = {"id": "0123456789abcdef", "kind": "ingest", "status": "running", "collection": "news", "total": 5,
            "processed": 2, "added": 1, "duplicates": 1, "memories": 3, "refused": 0, "refusals": [],
            "document_ids": [7], "created_at": "2026-12-07T00:00:00Z", "created_ns": 1, "updated_at": "x",
            "started_at": "y", "seconds": 0.5, "documents_per_second": 4.0, "error": None, "priority": "high"}
    job = IngestJob.from_dict(data)
    assert (job.collection, job.processed, job.document_ids, job.other) == ("news", 2, [7], {"priority": "high"})
    assert job.to_dict() == data


def test_a_report_counts_in_within_what_a_job_keeps():
    job = IngestJob(id="0123456789abcdef", collection="news", total=3)
    job.document_ids = list(range(JOB_IDS_KEPT - 1))
    report = IngestReport(added=[101, 102], duplicates=1, memories=6,
                          failed=[InputError(f"bad {i}", source=f"d{i}") for i in range(REFUSALS_KEPT + 5)])
    assert job.count(report) == 2
    assert (job.added, job.duplicates, job.memories, job.refused) == (2, 1, 6, REFUSALS_KEPT + 5)
    assert len(job.refusals) == REFUSALS_KEPT and job.refusals[0] == "d0: bad 0"
    assert len(job.document_ids) == JOB_IDS_KEPT and job.document_ids[-1] == 101
