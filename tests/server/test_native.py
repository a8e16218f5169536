"""The native API over HTTP, against a real ``memkit serve`` subprocess: ingest in every body form, listing with
filters, one document, deletion, asking with sources and ``as_of``, collections, stats, metrics and the docs."""

from __future__ import annotations

import json
import re

import pytest

from serverhelpers import RAG_OPTIONS, error_of, wait_job

pytestmark = pytest.mark.timeout(180)

PEOPLE = [
    {"id": "ada", "text": "Ada Varn is a lighthouse keeper who lives in Port Elsin.", "source": "people",
     "timestamp": "2020-01-01T00:00:00Z", "role": "keeper"},
    {"id": "tomas", "text": "Tomas Brell is a cartographer born in Kessin.", "source": "people",
     "timestamp": "2021-06-01T12:00:00Z"},
    {"id": "mira", "text": "Mira Okonde leads the Harbour Trust of the northern coast.", "source": "trust",
     "timestamp": "2023-03-01T00:00:00Z"},
]
LOG_LINES = [
    {"id": "log1", "text": "The Port Elsin ferry was cancelled for the storm.", "timestamp": "2022-02-02T00:00:00Z"},
    {"id": "log2", "text": "The Kessin museum reopened its map room.", "timestamp": "2024-05-05T00:00:00Z"},
]
NOTES = "Harbour Trust meeting notes: the northern pier will be rebuilt next spring."
UPLOADED = [
    {"id": "up1", "text": "Orrin Tal repairs clocks in the old quarter of Kessin.",
     "timestamp": "2019-09-09T00:00:00Z"},
    {"id": "up2", "text": "Sela Marn sails the night ferry between Port Elsin and Kessin."},
]


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory):
    """A directory that exists and that the server was not allowed to read."""
    path = tmp_path_factory.mktemp("elsewhere")
    (path / "config.json").write_text("{}")
    return path


@pytest.fixture(scope="module")
def server(servers, new_store, model_dir):
    return servers(new_store(), "--allow-path", model_dir)


@pytest.fixture(scope="module")
def client(server):
    with server.client() as c:
        yield c


@pytest.fixture(scope="module")
def ingested(client):
    """Every body form once, into collection "default"; returns the finished jobs by form."""
    jobs = {}
    r = client.post("/collections/default/documents", params={"wait": "true", "stream": "people"}, json=PEOPLE)
    assert r.status_code == 200, r.text
    jobs["json"] = r.json()
    body = "".join(json.dumps(d) + "\n" for d in LOG_LINES)
    r = client.post("/collections/default/documents", params={"stream": "log"}, content=body.encode(),
                    headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 202, r.text
    assert r.json()["status"] in ("queued", "running", "done")
    jobs["jsonl"] = wait_job(client, r.json()["id"])
    r = client.post("/collections/default/documents", params={"wait": "true"},
                    files={"file": ("notes.txt", NOTES.encode(), "text/plain")})
    assert r.status_code == 200, r.text
    jobs["txt"] = r.json()
    upload = "".join(json.dumps(d) + "\n" for d in UPLOADED).encode()
    r = client.post("/collections/default/documents", params={"wait": "true", "stream": "upload"},
                    files={"file": ("more.jsonl", upload, "application/octet-stream")})
    assert r.status_code == 200, r.text
    jobs["upload"] = r.json()
    return jobs


def all_documents(client, **params) -> list[dict]:
    r = client.get("/collections/default/documents", params={"limit": 1000, **params})
    assert r.status_code == 200, r.text
    return r.json()["documents"]


def by_external(client) -> dict[str, dict]:
    return {d["external_id"]: d for d in all_documents(client) if d["external_id"]}


# ---- ingest ------------------------------------------------------------------------------------------------


def test_every_body_form_ingests_and_its_job_counts(ingested):
    expected = {"json": len(PEOPLE), "jsonl": len(LOG_LINES), "txt": 1, "upload": len(UPLOADED)}
    for form, n in expected.items():
        job = ingested[form]
        assert job["status"] == "done", (form, job)
        assert job["collection"] == "default"
        assert (job["total"], job["processed"], job["added"], job["duplicates"], job["refused"]) == (n, n, n, 0, 0), \
            (form, job)
        assert len(job["document_ids"]) == n and job["memories"] >= n


def test_documents_keep_ids_timestamps_streams_sources_and_meta(client, ingested):
    docs = by_external(client)
    assert set(docs) == {d["id"] for d in PEOPLE + LOG_LINES + UPLOADED}
    ada = docs["ada"]
    assert (ada["source"], ada["stream"]) == ("people", "people")
    assert ada["timestamp"].startswith("2020-01-01T00:00:00")
    assert ada["meta"] == {"role": "keeper"}
    assert docs["log2"]["stream"] == "log" and docs["up2"]["stream"] == "upload"
    assert docs["up2"]["timestamp"] is None
    assert ada["id"] in ingested["json"]["document_ids"]
    notes = [d for d in all_documents(client) if d["source"] == "notes.txt"]
    assert len(notes) == 1 and notes[0]["chars"] == len(NOTES) and notes[0]["id"] == ingested["txt"]["document_ids"][0]


def test_the_same_documents_again_are_duplicates(client, ingested):
    r = client.post("/collections/default/documents", params={"wait": "true"}, json=PEOPLE[:2])
    job = r.json()
    assert r.status_code == 200 and job["status"] == "done", r.text
    assert (job["added"], job["duplicates"], job["document_ids"]) == (0, 2, [])
    assert len(all_documents(client)) == 8


# ---- listing, filters, one document -----------------------------------------------------------------------


def test_list_filters_by_stream_source_and_time(client, ingested):
    ext = lambda docs: sorted(d["external_id"] for d in docs)  # noqa: E731
    assert ext(all_documents(client, stream="log")) == ["log1", "log2"]
    assert ext(all_documents(client, stream="upload")) == ["up1", "up2"]
    assert ext(all_documents(client, source="people")) == ["ada", "tomas"]
    assert all_documents(client, stream="no-such-stream") == []
    assert ext(all_documents(client, since="2021-01-01", until="2023-12-31")) == ["log1", "mira", "tomas"]
    assert ext(all_documents(client, since="2023-03-01T00:00:00Z")) == ["log2", "mira"]  # bounds are inclusive
    assert ext(all_documents(client, until="2020-01-01T00:00:00+00:00")) == ["ada", "up1"]
    # an offset is the same local time elsewhere: 13:00+01:00 is 12:00Z
    assert ext(all_documents(client, since="2021-06-01T13:00:00+01:00", until="2021-06-01T13:00:00+01:00")) == \
        ["tomas"]


def test_list_pages_in_id_order(client, ingested):
    everything = all_documents(client)
    ids = [d["id"] for d in everything]
    assert ids == sorted(ids)
    r = client.get("/collections/default/documents", params={"limit": 3, "offset": 2})
    page = r.json()
    assert [d["id"] for d in page["documents"]] == ids[2:5]
    assert (page["limit"], page["offset"], page["collection_documents"]) == (3, 2, len(ids))


def test_get_one_document_with_its_text(client, ingested):
    docs = by_external(client)
    for sent in PEOPLE + LOG_LINES + UPLOADED:
        r = client.get(f"/collections/default/documents/{docs[sent['id']]['id']}")
        assert r.status_code == 200, r.text
        assert r.json()["text"] == sent["text"]
        assert r.json()["external_id"] == sent["id"]


def test_delete_a_document(client, ingested):
    r = client.post("/collections/default/documents", params={"wait": "true"},
                    json=[{"text": "A document that is deleted again.", "id": "gone"}])
    (doc_id,) = r.json()["document_ids"]
    before = len(all_documents(client))
    r = client.delete(f"/collections/default/documents/{doc_id}")
    assert r.status_code == 200 and r.json() == {"deleted": doc_id}, r.text
    assert len(all_documents(client)) == before - 1
    err = error_of(client.get(f"/collections/default/documents/{doc_id}"), 404)
    assert err["code"] == "document_not_found" and str(doc_id) in err["message"]
    err = error_of(client.delete(f"/collections/default/documents/{doc_id}"), 404)
    assert err["code"] == "document_not_found"
    r = client.post("/collections/default/ask", json={"question": "Which document was deleted?", "top_k": 50})
    assert doc_id not in [s["document_id"] for s in r.json()["sources"]]


# ---- ask ---------------------------------------------------------------------------------------------------


def test_ask_answers_with_sources(client, ingested):
    docs = by_external(client)
    r = client.post("/collections/default/ask", json={"question": "Where does Ada Varn live?", "top_k": 3})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["collection"] == "default" and out["question"] == "Where does Ada Varn live?"
    assert isinstance(out["answer"], str) and out["method"] == "rag"
    assert 1 <= len(out["sources"]) <= 3
    top = out["sources"][0]
    assert top["document_id"] == docs["ada"]["id"] and top["external_id"] == "ada"
    assert top["timestamp"].startswith("2020-01-01") and top["kind"] == "chunk"
    assert "Ada Varn" in top["snippet"]
    scores = [s["score"] for s in out["sources"]]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0
    assert out["batch_size"] >= 1
    assert out["timings_ms"]["server"] >= out["timings_ms"]["generate"] > 0
    again = client.post("/collections/default/ask", json={"question": "Where does Ada Varn live?", "top_k": 3})
    assert again.json()["answer"] == out["answer"], "greedy answers are deterministic"


def test_as_of_leaves_out_later_documents(client, ingested):
    docs = by_external(client)
    question = {"question": "Who leads the Harbour Trust of the northern coast?", "top_k": 20}
    now = client.post("/collections/default/ask", json=question).json()
    assert docs["mira"]["id"] in [s["document_id"] for s in now["sources"]]
    then = client.post("/collections/default/ask", json={**question, "as_of": "2022-12-31T23:59:59Z"}).json()
    ids = [s["document_id"] for s in then["sources"]]
    assert docs["mira"]["id"] not in ids and docs["log2"]["id"] not in ids
    assert {docs[k]["id"] for k in ("ada", "tomas", "log1", "up1")} <= set(ids)
    assert all(s["timestamp"] is not None and s["timestamp"] <= "2022-12-31T23:59:59" for s in then["sources"])
    # undated documents (the uploaded notes, up2) have no time to compare: as_of leaves them out
    assert docs["up2"]["id"] not in ids
    early = client.post("/collections/default/ask", json={**question, "as_of": "2019-12-31"}).json()
    assert {s["external_id"] for s in early["sources"]} == {"up1"}


# ---- collections -------------------------------------------------------------------------------------------


def test_collections_create_describe_list_delete(client, model_dir):
    r = client.post("/collections", json={"name": "extra", "model": str(model_dir), "method": "rag",
                                          "options": RAG_OPTIONS})
    assert r.status_code == 201, r.text
    made = r.json()
    assert (made["name"], made["method"], made["model"]) == ("extra", "rag", str(model_dir))
    assert made["options"]["chunk_tokens"] == 32 and made["options"]["max_new_tokens"] == 8
    names = [c["name"] for c in client.get("/collections").json()["collections"]]
    assert names == ["default", "extra"]
    err = error_of(client.post("/collections", json={"name": "extra", "model": str(model_dir)}), 409)
    assert "extra" in err["message"] and "exists" in err["message"]

    r = client.post("/collections/extra/documents", params={"wait": "true"},
                    json=[{"text": "Only the extra collection knows about Pell Harrow."}])
    assert r.json()["added"] == 1
    described = client.get("/collections/extra").json()
    assert described["name"] == "extra" and described["stats"]["documents"] == 1
    out = client.post("/collections/extra/ask", json={"question": "Who is Pell Harrow?"}).json()
    assert {s["document_id"] for s in out["sources"]} == set(r.json()["document_ids"])
    assert "Pell Harrow" in out["sources"][0]["snippet"]
    assert "Pell Harrow" not in json.dumps(client.post("/collections/default/ask",
                                                       json={"question": "Who is Pell Harrow?", "top_k": 50}).json()
                                           ["sources"])

    # a document is reached only through its own collection
    extra_id = out["sources"][0]["document_id"]
    assert error_of(client.get(f"/collections/default/documents/{extra_id}"), 404)["code"] == "document_not_found"
    assert error_of(client.delete(f"/collections/default/documents/{extra_id}"), 404)["code"] == "document_not_found"
    ada = by_external(client)["ada"]["id"]
    error_of(client.get(f"/collections/extra/documents/{ada}"), 404)
    assert client.get(f"/collections/extra/documents/{extra_id}").json()["text"].startswith("Only the extra")
    assert [d["id"] for d in client.get("/collections/extra/documents").json()["documents"]] == [extra_id]

    r = client.delete("/collections/extra")
    assert r.status_code == 200 and r.json() == {"deleted": "extra", "documents": 1}, r.text
    err = error_of(client.get("/collections/extra"), 404)
    assert err["code"] == "collection_not_found" and "'extra'" in err["message"] and "'default'" in err["message"]
    error_of(client.post("/collections/extra/ask", json={"question": "Who is Pell Harrow?"}), 404)
    assert [c["name"] for c in client.get("/collections").json()["collections"]] == ["default"]
    # the name can be used again, and the new collection starts empty
    r = client.post("/collections", json={"name": "extra", "model": str(model_dir), "options": RAG_OPTIONS})
    assert r.status_code == 201, r.text
    assert client.get("/collections/extra").json()["stats"]["documents"] == 0
    assert client.delete("/collections/extra").json() == {"deleted": "extra", "documents": 0}


def test_a_model_path_not_allowed_is_refused(client, elsewhere, model_dir):
    for model in (str(elsewhere), str(elsewhere / "missing-model")):
        err = error_of(client.post("/collections", json={"name": "sneaky", "model": model, "method": "rag"}), 422)
        assert "--allow-path" in err["message"] and model in err["message"], err
    err = error_of(client.post("/collections", json={"name": "sneaky2", "model": str(model_dir), "method": "rag",
                                                     "options": {"embedder": str(elsewhere)}}), 422)
    assert "--allow-path" in err["message"]
    names = [c["name"] for c in client.get("/collections").json()["collections"]]
    assert "sneaky" not in names and "sneaky2" not in names


def test_bad_collection_requests(client, model_dir):
    err = error_of(client.post("/collections", json={"name": "bad name/x", "model": str(model_dir)}), 422)
    assert "collection name" in err["message"]
    err = error_of(client.post("/collections", json={"name": "m", "model": str(model_dir), "method": "nope"}), 422)
    assert "nope" in err["message"]
    err = error_of(client.post("/collections", json={"name": "m", "model": str(model_dir), "colour": "red"}), 422)
    assert "colour" in err["message"]
    assert [c["name"] for c in client.get("/collections").json()["collections"]] == ["default"]


# ---- stats, metrics, docs ----------------------------------------------------------------------------------


def test_stats(client, ingested):
    client.post("/collections/default/ask", json={"question": "Where was Tomas Brell born?"})
    stats = client.get("/stats").json()
    n = len(all_documents(client))
    assert stats["collections"]["default"]["documents"] == n
    assert stats["collections"]["default"]["method"] == "rag"
    assert stats["batches"] >= 1 and stats["mean_batch_size"] >= 1
    assert stats["running_job"] is None and stats["queued_jobs"] == 0 and stats["ask_queue_depth"] == 0
    assert stats["uptime_s"] > 0


def test_metrics_name_routes_by_template(client, ingested):
    client.post("/collections/default/ask", json={"question": "Where was Tomas Brell born?"})
    doc_id = by_external(client)["ada"]["id"]
    client.get(f"/collections/default/documents/{doc_id}")
    client.get("/collections/default/documents/999999")
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    asks = re.search(r'memkit_http_requests_total\{method="POST",route="/collections/\{name\}/ask",status="200"\} '
                     r'(\d+)', text)
    assert asks and int(asks.group(1)) >= 1, text
    assert 'route="/collections/{name}/documents/{doc_id}",status="404"' in text
    assert f"/documents/{doc_id}\"" not in text and "999999" not in text, "ids must not make series of their own"
    count = re.search(r"^memkit_ask_batch_size_count (\S+)$", text, re.M)
    assert count and float(count.group(1)) >= 1
    assert "memkit_ask_queue_depth 0.0" in text
    ingested_total = re.search(r"^memkit_ingest_documents_total (\S+)$", text, re.M)
    assert ingested_total and float(ingested_total.group(1)) >= 8


def test_docs_and_openapi(client):
    r = client.get("/docs")
    assert r.status_code == 200 and "swagger" in r.text.lower()
    schema = client.get("/openapi.json").json()
    assert schema["info"]["title"] == "memkit"
    for path in ("/collections/{name}/ask", "/collections/{name}/documents", "/jobs/{job_id}",
                 "/v1/chat/completions", "/v1/models", "/healthz", "/metrics"):
        assert path in schema["paths"], path


def test_jobs_are_listed_newest_first(client, ingested):
    jobs = client.get("/jobs").json()["jobs"]
    ids = [j["id"] for j in jobs]
    for job in ingested.values():
        assert job["id"] in ids
    assert all("document_ids" not in j for j in jobs)
    created = [j["created_at"] for j in jobs]
    assert created == sorted(created, reverse=True)
