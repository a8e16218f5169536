"""The native API's routes (collections, documents, ingest jobs, ask, health, stats, metrics) and their request
shapes.

Owns: ``add_native_routes``, the request shapes (pydantic, unknown fields refused), and turning an ingest body (a
JSON list or ``{"documents": [...]}``, a JSONL body, or an uploaded file) into documents with the same parser as
``memkit ingest`` (``memkit.sources``). Answers, documents and collections are shown as ``memkit.service.views``
shows them; errors are the domain's (``memkit.errors``, ``storage.errors``) or, for what only HTTP knows,
``server.errors.ApiError``. The app itself (lifespan, error shape, middleware) is ``server.app``'s.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from dataclasses import dataclass, field
from typing import Annotated, Optional, Union

from fastapi import FastAPI, Path as PathParam, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from memkit.documents import ReadLimits, SourceDocument, validate_document
from memkit.engine import as_of_time
from memkit.errors import InputError, NotFoundError
from memkit.service.views import answer_view, collection_view, document_view
from server.config import ServerConfig
from server.errors import ApiError
from server.runtime import Runtime

JSONL_TYPES = ("application/x-ndjson", "application/jsonl", "application/x-jsonlines", "application/ndjson")
WAIT_MAX_S = 3600.0
Name = Annotated[str, PathParam(description="The collection's name.")]


class CollectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: StrictStr = Field(description="1 to 128 letters, digits, '.', '_' or '-'; also the OpenAI `model` name.")
    model: Optional[StrictStr] = Field(None, description=(
        "Base LM: a reference model's short name (gemma-3-270m, smollm2-135m-instruct), a hub id, or a directory or "
        ".gguf file the server was allowed (--allow-path). Default: the packaged world LM."))
    method: StrictStr = Field("rag", description="closed_book, prompt, rag, finetune, adapter, slots or hybrid.")
    options: dict[str, Union[StrictStr, StrictInt, StrictFloat, StrictBool]] = Field(
        default_factory=dict, description="Method options, as `memkit init -o KEY=VALUE`.")
    revision: Optional[StrictStr] = Field(None, description="Hub revision of the model.")


class AskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: StrictStr
    top_k: Optional[StrictInt] = Field(None, ge=1, le=1000, description="Memories to use (default: the method's).")
    as_of: Optional[StrictStr] = Field(None, description="Only documents timestamped at or before this time "
                                                         "(ISO 8601; no offset means UTC) are retrieved.")


@dataclass
class Parsed:
    """An ingest body's documents, how many were refused and the first refusals, and the documents' bytes."""

    docs: list[SourceDocument] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    refused: int = 0
    size: int = 0

    def refuse(self, exc: InputError) -> None:
        self.refused += 1
        if len(self.refusals) < 100:
            self.refusals.append(str(exc))

    def take(self, doc: SourceDocument, most: int) -> None:
        if len(self.docs) >= most:
            raise ApiError(413, f"more than {most} documents in one request; send them in several",
                           "too_many_documents")
        self.docs.append(doc)
        self.size += len(doc.text)


def parse_documents(body: bytes, content_type: str, stream: str | None, limits: ReadLimits,
                    filename: str | None = None, most: int = 100_000) -> Parsed:
    """The documents of an ingest body, each checked as ``memkit ingest`` checks it (``memkit.sources``), and
    the refusals of the ones that are not good documents; at most ``most`` documents (413 past it)."""
    from memkit.sources import decode_text, parse_jsonl_line, read_jsonl

    out = Parsed()
    name = filename or "request"
    if filename is not None and not filename.endswith((".jsonl", ".ndjson")):
        try:
            text = decode_text(body, name, limits.max_doc_bytes)
            out.take(validate_document(SourceDocument(text=text, source=name, stream=stream), limits, source=name),
                     most)
        except InputError as exc:
            out.refuse(exc)
        return out
    if filename is not None or content_type in JSONL_TYPES:
        for item in read_jsonl(io.BytesIO(body), name, stream, limits=limits):
            if isinstance(item, InputError):
                out.refuse(item)
            else:
                out.take(item, most)
        return out
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"the body is not valid JSON ({exc}); send a JSON list of documents, "
                            f"{{\"documents\": [...]}}, or JSONL with Content-Type application/x-ndjson",
                       "invalid_json") from None
    if isinstance(data, dict) and set(data) == {"documents"}:
        data = data["documents"]
    if not isinstance(data, list):
        raise ApiError(422, "the body must be a JSON list of documents or {\"documents\": [...]}, each an object "
                            "with a 'text'", "invalid_input")
    if len(data) > most:
        raise ApiError(413, f"{len(data)} documents in one request, more than {most}; send them in several",
                       "too_many_documents")
    for number, item in enumerate(data, 1):
        try:
            if not isinstance(item, dict):
                raise InputError("each document must be a JSON object with a 'text' field", source="document",
                                 line=number)
            raw = json.dumps(item, ensure_ascii=False, allow_nan=False).encode()
            out.take(parse_jsonl_line(raw, "document", number, stream, len(out.docs), limits), most)
        except InputError as exc:
            out.refuse(exc)
        except ValueError as exc:
            out.refuse(InputError(str(exc), source="document", line=number))
    return out





def add_native_routes(app: FastAPI, runtime: Runtime, config: ServerConfig, check_question) -> None:
    """The native API's routes on ``app``: health, stats and metrics, collections, documents and ingest jobs,
    and ask."""
    # ---- health, stats, metrics ---------------------------------------------------------------------------
    @app.get("/healthz", tags=["service"], summary="Liveness: 200 once the store and models are loaded.")
    async def healthz():
        return {"status": "stopping" if runtime.stopping.is_set() else "ok", "collections": len(runtime.served)}

    @app.get("/stats", tags=["service"], summary="Collections' sizes, batching and jobs.")
    async def stats():
        return await runtime.stats()

    @app.get("/metrics", tags=["service"], summary="Prometheus text format.")
    async def metrics():
        return Response(runtime.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    # ---- collections ----------------------------------------------------------------------------------------
    @app.get("/collections", tags=["collections"], summary="Every collection the server serves.")
    async def list_collections():
        return {"collections": [collection_view(s.store.info) for s in runtime.served.values() if not s.deleted]}

    @app.post("/collections", status_code=201, tags=["collections"],
              summary="Create a collection (model + method + options, as `memkit init`).")
    async def create_collection(body: CollectionIn):
        served = await runtime.create_collection(body.name, model=body.model, method=body.method,
                                                 options=body.options, revision=body.revision)
        return collection_view(served.store.info)

    @app.get("/collections/{name}", tags=["collections"], summary="A collection and its counts.")
    async def describe_collection(name: Name):
        served = runtime.get(name)
        stats = await runtime.worker.run(served.store.stats)
        return {**collection_view(served.store.info), "stats": stats}

    @app.delete("/collections/{name}", tags=["collections"],
                summary="Delete a collection with its documents and memories.")
    async def delete_collection(name: Name):
        n = await runtime.delete_collection(name)
        return {"deleted": name, "documents": n}

    # ---- documents ------------------------------------------------------------------------------------------
    @app.post("/collections/{name}/documents", status_code=202, tags=["documents"],
              summary="Ingest documents as a background job.",
              description="The body is a JSON list of documents (`text` required; `id`, `source`, `timestamp`, "
                          "other fields kept as meta), `{\"documents\": [...]}`, JSONL (Content-Type "
                          "application/x-ndjson), or a multipart upload (field `file`: .jsonl, else one text "
                          "document). An invalid document refuses the whole request (422, nothing written) unless "
                          "`skip_invalid` is set, which ingests the rest and lists the refusals in the job. Returns "
                          "the job (`GET /jobs/{id}` follows it); with `wait` the finished job (200).")
    async def ingest(request: Request, name: Name,
                     stream: Annotated[Optional[str], Query(description="Stream of these documents.")] = None,
                     wait: Annotated[bool, Query(description="Answer when the job has finished.")] = False,
                     skip_invalid: Annotated[bool, Query(description="Ingest the valid documents of a body "
                                                                     "that holds invalid ones.")] = False):
        runtime.get(name)
        limits = ReadLimits(max_doc_bytes=min(ReadLimits().max_doc_bytes, config.max_body_bytes))
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "multipart/form-data":
            form = await request.form(max_files=1, max_fields=4)
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise ApiError(422, "a multipart ingest needs its file in the field 'file'", "invalid_input")
            body, filename = await upload.read(), upload.filename or "upload"
        elif content_type in ("application/json", *JSONL_TYPES):
            body, filename = await request.body(), None
        else:
            raise ApiError(415, f"Content-Type {content_type or '(none)'} is not an ingest body: send "
                                f"application/json, application/x-ndjson (JSONL) or multipart/form-data (a file)",
                           "unsupported_media_type")
        if not body.strip():
            raise ApiError(422, "the body is empty: send documents", "invalid_input")
        runtime.check_room(len(body))       # before parsing: a full queue costs no work
        parsed = await asyncio.to_thread(parse_documents, body, content_type, stream, limits, filename,
                                         config.max_request_documents)
        del body
        if parsed.refused and not skip_invalid:
            total = parsed.refused + len(parsed.docs)
            more = f" ({parsed.refused} of {total} are invalid)" if parsed.refused > 1 else ""
            raise ApiError(422, f"{parsed.refusals[0]}{more}; nothing was ingested (set skip_invalid=true to ingest "
                                f"the valid ones)", "invalid_input")
        if not parsed.docs and not parsed.refused:
            raise ApiError(422, "the body holds no documents", "invalid_input")
        job = runtime.submit(name, parsed.docs, parsed.refusals, parsed.refused, parsed.size)
        if wait:
            return JSONResponse(await runtime.wait_job(job.id, WAIT_MAX_S), status_code=200)
        return job.to_dict()

    @app.get("/collections/{name}/documents", tags=["documents"], summary="Documents, by id, with filters.")
    async def list_documents(
            name: Name,
            limit: Annotated[int, Query(ge=1, le=1000)] = 100,
            offset: Annotated[int, Query(ge=0)] = 0,
            stream: Optional[str] = None,
            source: Optional[str] = None,
            since: Annotated[Optional[str], Query(description="Timestamped at or after (ISO 8601).")] = None,
            until: Annotated[Optional[str], Query(description="Timestamped at or before (ISO 8601).")] = None):
        served = runtime.get(name)
        lo, hi = as_of_time(since, "since"), as_of_time(until, "until")   # a bad one: 422 naming it
        rows, total = await runtime.worker.run(lambda: (
            served.store.list_documents(limit=limit, offset=offset, stream=stream, source=source, since=lo,
                                        until=hi), served.store.count_documents()))
        return {"documents": [document_view(r) for r in rows], "limit": limit, "offset": offset,
                "collection_documents": total}

    @app.get("/collections/{name}/documents/{doc_id}", tags=["documents"], summary="A document with its text.")
    async def get_document(name: Name, doc_id: int):
        served = runtime.get(name)
        row = await runtime.worker.run(lambda: served.store.get_document(doc_id))
        return document_view(row, with_text=True)

    @app.delete("/collections/{name}/documents/{doc_id}", tags=["documents"],
                summary="Delete a document and its memories.")
    async def delete_document(name: Name, doc_id: int):
        served = runtime.get(name)
        await runtime.worker.run(lambda: served.store.remove_document(doc_id))
        return {"deleted": doc_id}

    @app.get("/jobs/{job_id}", tags=["documents"], summary="An ingest job: status, progress, final report.")
    async def get_job(job_id: str):
        job = runtime.root.jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id!r}", code="job_not_found")
        return job

    @app.get("/jobs", tags=["documents"], summary="Every ingest job the store remembers, newest first.")
    async def list_jobs(limit: Annotated[int, Query(ge=1, le=1000)] = 100):
        jobs = runtime.root.jobs.all()[::-1][:limit]
        return {"jobs": [{k: v for k, v in j.items() if k != "document_ids"} for j in jobs]}

    # ---- ask ------------------------------------------------------------------------------------------------
    @app.post("/collections/{name}/ask", tags=["ask"], summary="Answer a question with sources.")
    async def ask(name: Name, body: AskIn):
        check_question(body.question)
        t0 = time.perf_counter()
        answer, docs, batch = await runtime.ask(name, body.question, body.top_k, body.as_of)
        total = (time.perf_counter() - t0) * 1000
        out = answer_view(answer, docs, collection=name, batch_size=batch)
        out["timings_ms"]["server"] = round(total, 3)
        return out

