"""A server killed (SIGKILL) in the middle of an ingest job: on restart the job says "interrupted", every document
it counted as added is stored whole, the store is healthy, and sending the documents again completes the set
(those already stored counted as duplicates)."""

from __future__ import annotations

import time

import pytest

from serverhelpers import error_of, wait_job

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]   # two server starts and two ingests: ~20 s

N = 300


def crash_doc(i: int) -> dict:
    return {"id": f"c{i}", "text": f"Entry {i}: the lamp of tower {i % 17} in Port Elsin was checked on night {i}."}


def doctor(memkit_cli, store) -> str:
    result = memkit_cli(store)("doctor")
    assert result.exit_code == 0, result.output + result.stderr
    assert "healthy" in result.output, result.output
    return result.output


def test_kill_9_during_an_ingest_then_restart(servers, new_store, memkit_cli):
    store = new_store()
    docs = [crash_doc(i) for i in range(N)]
    sent = {d["id"]: d["text"] for d in docs}

    first = servers(store, "--ingest-batch", "4")
    with first.client() as c:
        r = c.post("/collections/default/documents", json=docs)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        end = time.monotonic() + 60
        while True:
            job = c.get(f"/jobs/{job_id}").json()
            if job["status"] == "running" and job["processed"] > 0:
                break
            assert job["status"] in ("queued", "running"), job
            assert time.monotonic() < end, f"the job made no recorded progress in 60 s: {job}"
            time.sleep(0.02)
    first.kill()
    assert first.proc.returncode == -9
    listed = job["document_ids"]
    assert 0 < len(listed) < N and job["added"] == len(listed), job

    doctor(memkit_cli, store)   # a killed writer leaves a store that checks healthy, before any repair

    second = servers(store)
    with second.client() as c:
        after = c.get(f"/jobs/{job_id}").json()
        assert after["status"] == "interrupted", after
        assert "killed or crashed" in after["error"] and after["finished_at"]
        assert after["document_ids"][:len(listed)] == listed
        assert {j["id"]: j["status"] for j in c.get("/jobs").json()["jobs"]}[job_id] == "interrupted"

        for doc_id in listed:
            r = c.get(f"/collections/default/documents/{doc_id}")
            assert r.status_code == 200, r.text
            got = r.json()
            assert got["text"] == sent[got["external_id"]], got
        stored = c.get("/collections/default").json()["stats"]["documents"]
        assert len(listed) <= stored < N, "only the chunks committed before the kill are stored"
        rows = c.get("/collections/default/documents", params={"limit": 1000}).json()["documents"]
        assert len(rows) == stored
        for row in rows:   # whole documents only: what is stored is exactly what was sent
            assert row["chars"] == len(sent[row["external_id"]])

        r = c.post("/collections/default/documents", json=docs)
        assert r.status_code == 202, r.text
        again = wait_job(c, r.json()["id"], timeout=180)
        assert again["status"] == "done", again
        assert (again["processed"], again["added"], again["duplicates"]) == (N, N - stored, stored), again
        assert c.get("/collections/default").json()["stats"]["documents"] == N
        error_of(c.get("/jobs/0000000000000000"), 404)
    assert second.terminate() is not None
    doctor(memkit_cli, store)
