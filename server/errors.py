"""Errors as the API returns them: one shape for every route, never a traceback.

Owns: ``ApiError`` and ``error_body``. Every error response is ``{"error": {"message": ..., "type": ...,
"code": ...}}`` (the shape OpenAI's API uses, so its clients read ours), with one clear line as the message; the
status code says the kind (400 bad input, 401 no or wrong key, 404 unknown collection, document or job, 409 a
conflict, 413 too large, 422 invalid values, 503 stopping). A library or store error carries its own status and
code (``memkit.errors``, ``storage.errors``); ``ApiError`` is for what only HTTP knows (a body that is not JSON,
a content type).
"""

from __future__ import annotations

from memkit.errors import MemkitError
from storage.errors import StoreError


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


def error_body(status: int, message: str, code: str) -> dict:
    kind = "invalid_request_error" if 400 <= status < 500 else "server_error"
    if status == 401:
        kind = "authentication_error"
    return {"error": {"message": message, "type": kind, "code": code}}


def from_library(exc: Exception) -> ApiError:
    """The API error for a library, service or store error: the status and code its class carries
    (``memkit.errors``, ``storage.errors``); anything else is an internal error whose details stay in the log."""
    if isinstance(exc, (MemkitError, StoreError)):
        return ApiError(exc.http_status, exc.http_message, exc.code)
    return ApiError(500, "internal error; the server log has the details", "internal_error")
