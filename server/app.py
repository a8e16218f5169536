"""The FastAPI application: ``create_app(config)``.

Owns: the app's lifespan (the runtime started before the first request and stopped after the last), mapping
every error to one shape (``server.errors``), the question check both APIs share, and the middleware (API key,
body limit, metrics, CORS). The routes are ``server.routes``' (the native API) and ``server.openai_api``'s (the
OpenAI-compatible one). The OpenAPI schema is at ``/openapi.json`` and its pages at ``/docs``.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from memkit.documents import validate_question
from memkit.errors import MemkitError
from server.config import ServerConfig
from server.errors import ApiError, error_body, from_library
from server.guards import BodyTooLarge, Guard
from server.openai_api import add_routes as add_openai_routes
from server.routes import add_native_routes
from server.runtime import Runtime
from storage.errors import StoreError

log = logging.getLogger("memkit.server")


def create_app(config: ServerConfig, runtime: Runtime | None = None) -> FastAPI:
    runtime = runtime or Runtime(config)

    @asynccontextmanager
    async def lifespan(app):
        await runtime.start()
        log.info("memkit serving %s with %d collection(s)", config.store, len(runtime.served))
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title="memkit", version="1", lifespan=lifespan,
                  description="A continual knowledge memory for frozen language models: collections of documents, "
                              "questions answered with sources, and an OpenAI-compatible chat endpoint.")
    app.state.runtime = runtime

    # ---- errors: one shape ------------------------------------------------------------------------------
    def reply(err: ApiError) -> JSONResponse:
        return JSONResponse(error_body(err.status, err.message, err.code), status_code=err.status)

    @app.exception_handler(ApiError)
    async def _api(request, exc: ApiError):
        return reply(exc)

    @app.exception_handler(BodyTooLarge)
    async def _large(request, exc):
        return reply(ApiError(413, str(exc), "body_too_large"))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        if first.get("type") == "json_invalid":
            return reply(ApiError(400, f"the body is not valid JSON: {first.get('ctx', {}).get('error', '')}"
                                       .rstrip(": "), "invalid_json"))
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        return reply(ApiError(422, f"{where}: {first.get('msg', 'invalid')}{more}", "invalid_request"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc: StarletteHTTPException):
        if isinstance(exc.__cause__, BodyTooLarge):   # FastAPI reports a failed body read as a 400
            return reply(ApiError(413, str(exc.__cause__), "body_too_large"))
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = "no such route" if exc.status_code == 404 else str(exc.detail)
        return reply(ApiError(exc.status_code, message, code))

    @app.exception_handler(MemkitError)
    @app.exception_handler(StoreError)
    async def _library(request, exc):
        err = from_library(exc)
        if err.status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc)
        return reply(err)

    @app.exception_handler(Exception)
    async def _crash(request, exc):
        log.exception("%s %s failed", request.method, request.url.path)
        return reply(from_library(exc))

    def check_question(question: Any) -> None:
        if isinstance(question, str) and len(question) > config.max_question_chars:
            raise ApiError(413, f"the question is {len(question)} characters, over the server's limit of "
                                f"{config.max_question_chars} (--max-question-chars)", "question_too_long")
        validate_question(question)

    app.state.check_question = check_question
    add_native_routes(app, runtime, config, check_question)

    add_openai_routes(app, runtime, check_question)

    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=config.cors_origins, allow_methods=["*"],
                           allow_headers=["*"])
    app.add_middleware(Guard, api_key=config.api_key, max_body_bytes=config.max_body_bytes,
                       metrics=runtime.metrics, cors_origins=config.cors_origins)
    return app
