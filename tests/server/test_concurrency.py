"""Asks while an ingest job runs: concurrent questions are batched together and get exactly the answers (text and
sources) they get one at a time, and the job, run between the batches, finishes with the right counts.

The questions go to a collection ("quiet") that nothing is ingested into, so their answers cannot change while
the job writes to the other ("busy")."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from serverhelpers import RAG_OPTIONS, start_job, wait_job

pytestmark = pytest.mark.timeout(240)

QUIET_DOCS = [
    "Ada Varn is a lighthouse keeper who lives in Port Elsin.",
    "Tomas Brell is a cartographer born in Kessin.",
    "Mira Okonde leads the Harbour Trust of the northern coast.",
    "Orrin Tal repairs clocks in the old quarter of Kessin.",
    "Sela Marn sails the night ferry between Port Elsin and Kessin.",
    "The Harbour Trust meets on the first Monday of every month.",
]
QUESTIONS = [
    "Where does Ada Varn live?",
    "Where was Tomas Brell born?",
    "Who leads the Harbour Trust?",
    "What does Orrin Tal repair?",
    "Who sails the night ferry?",
    "When does the Harbour Trust meet?",
]
COPIES = 4   # each question asked this many times at once: 24 requests in flight
BUSY_BEFORE = 10
BUSY_JOB = 300


def busy_doc(i: int) -> dict:
    return {"id": f"b{i}", "text": f"Record {i}: crate {i * 7 % 97} left pier {i % 13} of Port Elsin on day {i}."}


@pytest.fixture(scope="module")
def server(servers, new_store, model_dir):
    return servers(new_store(), "--allow-path", model_dir, "--batch-wait-ms", "50", "--ingest-batch", "8")


def ask_key(out: dict) -> tuple:
    return out["answer"], [(s["document_id"], s["span"], s["score"], s["snippet"]) for s in out["sources"]]


def test_concurrent_asks_during_an_ingest_are_batched_and_unchanged(server, model_dir):
    with server.client() as c:
        r = c.post("/collections", json={"name": "quiet", "model": str(model_dir), "options": RAG_OPTIONS})
        assert r.status_code == 201, r.text
        r = c.post("/collections/quiet/documents", params={"wait": "true"},
                   json=[{"text": t, "id": f"q{i}"} for i, t in enumerate(QUIET_DOCS)])
        assert r.json()["added"] == len(QUIET_DOCS), r.text
        r = c.post("/collections/default/documents", params={"wait": "true"},
                   json=[busy_doc(i) for i in range(BUSY_BEFORE)])
        assert r.json()["added"] == BUSY_BEFORE, r.text

        def one_at_a_time() -> dict[str, tuple]:
            answers = {}
            for q in QUESTIONS:
                out = c.post("/collections/quiet/ask", json={"question": q}).json()
                assert out["batch_size"] == 1, out
                answers[q] = ask_key(out)
            return answers

        alone = one_at_a_time()
        assert len({a for a, _ in alone.values()}) > 1, "different questions, different answers"
        assert all(sources for _, sources in alone.values())

        # the job: BUSY_JOB new documents, plus the BUSY_BEFORE already stored (duplicates)
        docs = [busy_doc(i) for i in range(BUSY_JOB + BUSY_BEFORE)]
        job_id = start_job(c, docs)
        assert c.get("/stats").json()["running_job"] == job_id
        r = c.delete("/collections/default")
        assert r.status_code == 409 and r.json()["error"]["code"] == "collection_busy", r.text
        assert job_id in r.json()["error"]["message"]

    async def fire() -> list[dict]:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as ac:
            replies = await asyncio.gather(*(ac.post("/collections/quiet/ask", json={"question": q})
                                             for q in QUESTIONS * COPIES))
        for r in replies:
            assert r.status_code == 200, r.text
        return [r.json() for r in replies]

    together = asyncio.run(fire())

    with server.client() as c:
        during = c.get(f"/jobs/{job_id}").json()
        for q, out in zip(QUESTIONS * COPIES, together):
            assert out["question"] == q
            assert ask_key(out) == alone[q], f"{q!r} answered differently in a batch of {out['batch_size']}"
        sizes = [out["batch_size"] for out in together]
        assert max(sizes) > 1, f"no batching happened: batch sizes {sizes}"
        assert all(1 <= s <= 32 for s in sizes)

        job = wait_job(c, job_id)
        assert job["status"] == "done", job
        assert (job["total"], job["processed"]) == (BUSY_JOB + BUSY_BEFORE, BUSY_JOB + BUSY_BEFORE)
        assert (job["added"], job["duplicates"], job["refused"]) == (BUSY_JOB, BUSY_BEFORE, 0), job
        assert len(job["document_ids"]) == BUSY_JOB == len(set(job["document_ids"]))
        assert c.get("/collections/default").json()["stats"]["documents"] == BUSY_JOB + BUSY_BEFORE
        assert c.get("/collections/quiet").json()["stats"]["documents"] == len(QUIET_DOCS)
        stats = c.get("/stats").json()
        assert stats["running_job"] is None and stats["ask_queue_depth"] == 0
        assert stats["mean_batch_size"] > 1

        assert one_at_a_time() == alone, "the answers after the job are the answers before it"
    # the asks were answered while the job ran, not after it (else this test shows nothing about interleaving)
    assert during["status"] == "running" and during["processed"] < during["total"], during
