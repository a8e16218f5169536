"""A real pretrained LM behind `memkit serve` (tier ``reference``; `make test-reference`, run by CI): a collection on
Gemma 3 270M made over HTTP, memkit's English documents posted to it, and questions answered correctly, with their
sources, through the native API (with ``as_of``) and the official ``openai`` client."""

from __future__ import annotations

import json

import openai
import pytest

from experiments.bench.benchmarks import ENGLISH_DATA as DEFAULT_PATH
from memkit.datasets.metrics import f1
from memkit.reference import installed

pytestmark = [pytest.mark.reference, pytest.mark.timeout(900)]

DOCS = [json.loads(line) for line in (DEFAULT_PATH / "documents.jsonl").read_text().splitlines()]
QUESTIONS = {q["id"]: q for q in map(json.loads, (DEFAULT_PATH / "questions.jsonl").read_text().splitlines())}


@pytest.fixture(scope="module")
def server(servers, new_store):
    if not installed("gemma-3-270m"):
        pytest.fail("gemma-3-270m is not installed; run make models")
    server = servers(new_store())
    with server.client(timeout=600) as c:
        r = c.post("/collections", json={"name": "english", "model": "gemma-3-270m", "method": "rag",
                                         "options": {"chunk_tokens": 256, "top_k": 1}})
        assert r.status_code == 201, r.text
        r = c.post("/collections/english/documents", params={"wait": "true"}, json=DOCS)
        assert r.status_code == 200 and r.json()["added"] == len(DOCS), r.text
    return server


def test_openai_client_gets_a_right_answer_and_its_source(server):
    question = QUESTIONS["q-013"]                       # "Who founded Brackwater Analytics?" "Corin Ashby"
    with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=600) as client:
        reply = client.chat.completions.create(model="english",
                                               messages=[{"role": "user", "content": question["question"]}])
    assert f1(reply.choices[0].message.content, question["answers"]) == 1.0, reply.choices[0].message.content
    sources = reply.model_extra["memkit"]["sources"]
    assert sources and sources[0]["external_id"] == question["doc_ids"][0], sources


def test_as_of_leaves_out_the_later_update(server):
    before, after = QUESTIONS["q-008"], QUESTIONS["q-373"]   # who chairs The Lantern Fund, before and after
    assert before["question"] == after["question"] and before["answers"] != after["answers"]
    with server.client(timeout=600) as c:
        r = c.post("/collections/english/ask", json={"question": before["question"], "as_of": before["as_of"]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert f1(body["answer"], before["answers"]) == 1.0, body["answer"]      # not the later chief executive
        assert [s["external_id"] for s in body["sources"]] == before["doc_ids"], body["sources"]
