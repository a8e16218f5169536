"""The OpenAI-compatible routes: ``POST /v1/chat/completions`` (plain, and ``stream: true`` as server-sent
events) and ``GET /v1/models``.

Owns: reading a chat request (``model`` names a collection; the last user message is the question, text or
text parts; earlier messages are not used), answering it through the collection's batcher (its memories
retrieved and merged for this request), and writing the response in OpenAI's shapes with one extra field,
``memkit``: ``{"sources": [...], "timings_ms": {...}, "batch_size": n}``; a streamed response carries it in its
last chunk. Extra request settings travel in the body's ``memkit`` object (``top_k``, ``as_of``; with the
``openai`` client: ``extra_body={"memkit": {...}}``). Generation is greedy with the collection's own length
setting: ``temperature``, ``top_p`` and ``max_tokens`` are accepted and do not change it (documented in
docs/serve.md); ``n`` other than 1 is refused. A stream sends the role at once and the text, word by word, once
its batch is generated (memkit does not generate token by token across a batch); an error after the stream
began is its last event, in the error shape.
"""

from __future__ import annotations

import calendar
import json
import time
import uuid
from typing import Any, Optional, Union

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from memkit.engine import as_of_time
from server.errors import ApiError, error_body, from_library
from memkit.service.views import answer_view


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: StrictStr
    text: Optional[StrictStr] = None


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: StrictStr
    content: Union[StrictStr, list[TextPart], None] = None


class MemkitExtra(BaseModel):
    model_config = ConfigDict(extra="forbid")
    top_k: Optional[StrictInt] = Field(None, ge=1, le=1000)
    as_of: Optional[StrictStr] = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")   # OpenAI clients send settings memkit does not use
    model: StrictStr
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    n: Optional[StrictInt] = None
    memkit: Optional[MemkitExtra] = None


def question_of(messages: list[Message]) -> str:
    for message in reversed(messages):
        if message.role != "user":
            continue
        if isinstance(message.content, str):
            return message.content
        if isinstance(message.content, list):
            texts = [p.text for p in message.content if p.type == "text" and p.text]
            if len(texts) != len(message.content):
                raise ApiError(422, "messages: only text parts are understood", "unsupported_content")
            return "\n".join(texts)
        break
    raise ApiError(422, "messages: no user message with text to answer", "invalid_request")


def add_routes(app: FastAPI, runtime, check_question) -> None:
    def model_json(served) -> dict:
        info = served.store.info
        created = calendar.timegm(time.strptime(info.created_at[:19], "%Y-%m-%dT%H:%M:%S"))
        return {"id": info.name, "object": "model", "created": created, "owned_by": "memkit"}

    @app.get("/v1/models", tags=["openai"], summary="The collections, as OpenAI models.")
    async def models():
        return {"object": "list", "data": [model_json(s) for s in list(runtime.served.values()) if not s.deleted]}

    @app.get("/v1/models/{model}", tags=["openai"], summary="One collection, as an OpenAI model.")
    async def model(model: str):
        served = runtime.served.get(model)
        if served is None or served.deleted:
            raise ApiError(404, f"the model {model!r} does not exist: a model is a collection", "model_not_found")
        return model_json(served)

    @app.post("/v1/chat/completions", tags=["openai"],
              summary="Answer the last user message from a collection's memories (OpenAI chat format).")
    async def chat(body: ChatRequest):
        if body.n not in (None, 1):
            raise ApiError(400, "n: only one choice (n=1) is generated", "unsupported_n")
        name = body.model
        if name not in runtime.served:
            raise ApiError(404, f"the model {name!r} does not exist: a model is a collection; this server has "
                                f"{', '.join(repr(n) for n in runtime.served) or 'none'}", "model_not_found")
        lm = runtime.served[name].engine.lm
        question = question_of(body.messages)
        check_question(question)
        extra = body.memkit or MemkitExtra()
        as_of_time(extra.as_of)   # a bad time is a 422 before any stream begins
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

        async def answered():
            t0 = time.perf_counter()
            answer, docs, batch = await runtime.ask(name, question, extra.top_k, extra.as_of)
            # usage: the method's own token counts, else the texts' (the tokenizer only)
            prompt_tokens = answer.usage.prompt_tokens or lm.count_tokens(question)
            completion_tokens = answer.usage.generated_tokens or lm.count_tokens(answer.text)
            total = (time.perf_counter() - t0) * 1000
            native = answer_view(answer, docs, collection=name, batch_size=batch)
            native["timings_ms"]["server"] = round(total, 3)
            memkit = {"sources": native["sources"], "timings_ms": native["timings_ms"], "batch_size": batch,
                      "method": answer.method}
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                     "total_tokens": prompt_tokens + completion_tokens}
            return answer.text, usage, memkit

        if not body.stream:
            text, usage, memkit = await answered()
            return {"id": cid, "object": "chat.completion", "created": created, "model": name,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": "stop", "logprobs": None}],
                    "usage": usage, "memkit": memkit}

        def chunk(delta: dict, finish: Optional[str] = None, **more: Any) -> str:
            data = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": name,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **more}
            return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

        async def events():
            yield chunk({"role": "assistant", "content": ""})
            try:
                text, usage, memkit = await answered()
            except Exception as exc:  # the stream has begun: the error is its last event
                err = exc if isinstance(exc, ApiError) else from_library(exc)
                yield f"data: {json.dumps(error_body(err.status, err.message, err.code))}\n\n"
                return
            words = text.split(" ")
            for i, word in enumerate(words):
                yield chunk({"content": word if i == 0 else " " + word})
            yield chunk({}, "stop", usage=usage, memkit=memkit)
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
