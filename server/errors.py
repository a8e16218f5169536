"""Errors as the API returns them: one shape for every route, never a traceback.

Owns: ``ApiError`` and ``error_body``. Every error response is ``{"error": {"message": ..., "type": ...,
"code": ...}}`` (the shape OpenAI's API uses, so its clients read ours), with one clear line as the message; the
status code says the kind (400 bad input, 401 no or wrong key, 404 unknown collection, document or job, 409 a
conflict, 413 too large, 422 invalid values, 503 stopping). A library error maps by its class.
"""

from __future__ import annotations

from memkit.errors import ConfigError, InputError, MemkitError, ModelLoadError
from storage.errors import (
    CollectionNotFoundError,
    DocumentNotFoundError,
    ModelMismatchError,
    StoreError,
    StoreExistsError,
    StoreLockedError,
)


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
    """The API error for a library or store error."""
    message = str(exc)
    if isinstance(exc, (CollectionNotFoundError,)):
        return ApiError(404, message, "collection_not_found")
    if isinstance(exc, DocumentNotFoundError):
        ids = ", ".join(map(str, exc.document_ids))
        return ApiError(404, f"no document with id {ids} in this collection; GET its /documents lists the ids",
                        "document_not_found")
    if isinstance(exc, ModelMismatchError):
        return ApiError(409, message, "model_mismatch")
    if isinstance(exc, (StoreExistsError, StoreLockedError)):
        return ApiError(409, message, "conflict")
    if isinstance(exc, InputError):
        return ApiError(422, message, "invalid_input")
    if isinstance(exc, ModelLoadError):
        return ApiError(422, message, "model_load_failed")
    if isinstance(exc, ConfigError):
        return ApiError(422, message, "invalid_config")
    if isinstance(exc, StoreError) and getattr(exc, "exit_code", 3) == 2:
        return ApiError(422, message, "invalid_input")
    if isinstance(exc, (MemkitError, StoreError)):
        return ApiError(500, message, "store_error" if isinstance(exc, StoreError) else "memkit_error")
    return ApiError(500, "internal error; the server log has the details", "internal_error")
