"""The OpenAI-compatible routes through the official ``openai`` client: plain and streamed chat completions give
the native ask's answer, with memkit's sources in the extra ``memkit`` field; models are the collections."""

from __future__ import annotations

import calendar
import json
import time

import openai
import pytest

from serverhelpers import RAG_OPTIONS

pytestmark = pytest.mark.timeout(180)

DOCS = [
    {"id": "ada", "text": "Ada Varn is a lighthouse keeper who lives in Port Elsin.", "timestamp": "2020-01-01"},
    {"id": "tomas", "text": "Tomas Brell is a cartographer born in Kessin.", "timestamp": "2021-01-01"},
    {"id": "mira", "text": "Mira Okonde leads the Harbour Trust of the northern coast.", "timestamp": "2023-01-01"},
]
QUESTION = "Who leads the Harbour Trust?"


@pytest.fixture(scope="module")
def server(servers, new_store, model_dir):
    server = servers(new_store(), "--allow-path", model_dir)
    with server.client() as c:
        r = c.post("/collections/default/documents", params={"wait": "true"}, json=DOCS)
        assert r.status_code == 200 and r.json()["added"] == 3, r.text
        r = c.post("/collections", json={"name": "second.kb", "model": str(model_dir), "options": RAG_OPTIONS})
        assert r.status_code == 201, r.text
    return server


@pytest.fixture(scope="module")
def http(server):
    with server.client() as c:
        yield c


@pytest.fixture(scope="module")
def client(server):
    with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120) as c:
        yield c


def native(http, question: str, **more) -> dict:
    r = http.post("/collections/default/ask", json={"question": question, **more})
    assert r.status_code == 200, r.text
    return r.json()


def source_ids(sources) -> list[int]:
    return [s["document_id"] for s in sources]


def test_plain_completion_is_the_native_answer(client, http):
    expected = native(http, QUESTION)
    response = client.chat.completions.create(model="default", messages=[{"role": "user", "content": QUESTION}])
    assert response.object == "chat.completion" and response.model == "default"
    assert response.id.startswith("chatcmpl-")
    (choice,) = response.choices
    assert choice.message.role == "assistant" and choice.finish_reason == "stop"
    assert choice.message.content == expected["answer"]
    extra = response.model_extra["memkit"]
    assert source_ids(extra["sources"]) == source_ids(expected["sources"])
    assert extra["sources"][0]["external_id"] == "mira" and extra["sources"][0]["score"] > 0
    assert extra["method"] == "rag" and extra["batch_size"] >= 1 and extra["timings_ms"]["generate"] > 0
    assert response.usage.prompt_tokens > 0 and 0 < response.usage.completion_tokens <= RAG_OPTIONS["max_new_tokens"]
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens


def test_streamed_text_joined_is_the_plain_text(client, http):
    plain = client.chat.completions.create(model="default", messages=[{"role": "user", "content": QUESTION}])
    chunks = list(client.chat.completions.create(model="default", stream=True,
                                                 messages=[{"role": "user", "content": QUESTION}]))
    assert len(chunks) >= 3
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == plain.choices[0].message.content
    assert {c.id for c in chunks} == {chunks[0].id} and all(c.object == "chat.completion.chunk" for c in chunks)
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    assert [c.choices[0].finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert source_ids(last.model_extra["memkit"]["sources"]) == \
        source_ids(plain.model_extra["memkit"]["sources"])
    assert last.usage is not None and last.usage.completion_tokens == plain.usage.completion_tokens


def test_raw_event_stream_ends_with_done(server, http):
    body = {"model": "default", "stream": True, "messages": [{"role": "user", "content": QUESTION}]}
    with http.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") and "\n" not in e for e in events), raw
    assert events[-1] == "data: [DONE]"
    datas = [json.loads(e[len("data: "):]) for e in events[:-1]]
    assert all(d["object"] == "chat.completion.chunk" for d in datas)
    assert "memkit" in datas[-1] and all("memkit" not in d for d in datas[:-1])


def test_the_last_user_message_is_the_question(client, http):
    expected = native(http, "Where was Tomas Brell born?")
    response = client.chat.completions.create(model="default", messages=[
        {"role": "system", "content": "You answer from the documents."},
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": "Mira Okonde."},
        {"role": "user", "content": [{"type": "text", "text": "Where was Tomas Brell born?"}]},
    ], temperature=0.7, max_tokens=5)
    assert response.choices[0].message.content == expected["answer"]
    assert source_ids(response.model_extra["memkit"]["sources"]) == source_ids(expected["sources"])


def test_memkit_settings_travel_in_extra_body(client, http):
    expected = native(http, QUESTION, top_k=5, as_of="2022-01-01")
    response = client.chat.completions.create(model="default", messages=[{"role": "user", "content": QUESTION}],
                                              extra_body={"memkit": {"top_k": 5, "as_of": "2022-01-01"}})
    sources = response.model_extra["memkit"]["sources"]
    assert {s["external_id"] for s in sources} == {"ada", "tomas"}, "mira (2023) is later than as_of"
    assert source_ids(sources) == source_ids(expected["sources"])
    assert response.choices[0].message.content == expected["answer"]
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.chat.completions.create(model="default", messages=[{"role": "user", "content": QUESTION}],
                                       extra_body={"memkit": {"top_k": "many"}})
    assert "top_k" in caught.value.message


def test_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-collection", messages=[{"role": "user", "content": "Hi?"}])
    err = caught.value.body
    assert err["code"] == "model_not_found" and "no-such-collection" in err["message"]
    assert "'default'" in err["message"], "the message names the models there are"
    with pytest.raises(openai.NotFoundError):
        list(client.chat.completions.create(model="no-such-collection", stream=True,
                                            messages=[{"role": "user", "content": "Hi?"}]))


def test_requests_openai_refuses(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="default", n=2, messages=[{"role": "user", "content": QUESTION}])
    assert "n=1" in caught.value.message
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.chat.completions.create(model="default", messages=[{"role": "system", "content": "Only this."}])
    assert "user message" in caught.value.message
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.chat.completions.create(model="default", messages=[
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}])
    assert "text" in caught.value.message


def test_models_are_the_collections(client, http):
    models = client.models.list()
    assert [m.id for m in models.data] == ["default", "second.kb"]
    assert all(m.object == "model" and m.owned_by == "memkit" and m.created > 1_600_000_000 for m in models.data)
    names = [c["name"] for c in http.get("/collections").json()["collections"]]
    assert names == [m.id for m in models.data]
    assert client.models.retrieve("second.kb").id == "second.kb"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")
    response = client.chat.completions.create(model="second.kb", messages=[{"role": "user", "content": QUESTION}])
    assert response.model == "second.kb" and response.model_extra["memkit"]["sources"] == []


def test_a_bad_as_of_is_refused(client):
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.chat.completions.create(model="default", messages=[{"role": "user", "content": QUESTION}],
                                       extra_body={"memkit": {"as_of": "sometime last week"}})
    assert "sometime last week" in caught.value.message and caught.value.body["code"] == "invalid_input"


def test_a_bad_as_of_is_refused_before_a_stream_begins(client):
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        list(client.chat.completions.create(model="default", stream=True,
                                            messages=[{"role": "user", "content": QUESTION}],
                                            extra_body={"memkit": {"as_of": "sometime last week"}}))
    assert "sometime last week" in caught.value.message


def test_model_created_is_the_collections_creation_time(client, http):
    created = {c["name"]: c["created_at"] for c in http.get("/collections").json()["collections"]}
    for m in client.models.list().data:
        assert m.created == calendar.timegm(time.strptime(created[m.id][:19], "%Y-%m-%dT%H:%M:%S")), m
