"""Domain errors of the memkit library.

Owns: the exception classes the library and the service layer raise for ordinary mistakes (bad input, a model
that cannot be loaded, a bad configuration, something not found, a conflict, a service that cannot take work
now). Each message is one clear line that says what to do. Each class carries how every front door shows it:
``exit_code`` (the CLI's exit status), ``http_status`` and ``code`` (the HTTP API's status and machine code);
a front door only formats. ``storage.errors`` carries the same three for the store's errors. Knows nothing of
the CLI or the server themselves.
"""

from __future__ import annotations


class MemkitError(Exception):
    """Base of every error memkit reports to a user as one line."""

    exit_code = 1
    http_status = 500
    code = "memkit_error"

    def __init__(self, message: str = "", *, code: str | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def http_message(self) -> str:
        """The message as the HTTP API shows it (the same line unless a class words it for the API)."""
        return str(self)


class InputError(MemkitError):
    """A document or source that cannot be ingested (empty, binary, bad encoding, malformed JSONL...)."""

    exit_code = 2
    http_status = 422
    code = "invalid_input"

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None):
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {message}" if where else message)
        self.source = source
        self.line = line
        self.reason = message


class ModelLoadError(MemkitError):
    """A model or tokenizer that cannot be loaded from the given hub id or path."""

    exit_code = 4
    http_status = 422
    code = "model_load_failed"


class ConfigError(MemkitError):
    """A configuration value that is invalid; the message names the option to change."""

    exit_code = 2
    http_status = 422
    code = "invalid_config"


class NotFoundError(MemkitError):
    """Something asked for by name or id that does not exist (a collection a server does not serve, a job)."""

    exit_code = 2
    http_status = 404
    code = "not_found"


class ConflictError(MemkitError):
    """A request that conflicts with what exists or runs (a collection that exists, one being written)."""

    exit_code = 2
    http_status = 409
    code = "conflict"


class UnavailableError(MemkitError):
    """Work that cannot be taken now (a service stopping, a queue full); the same request may succeed later."""

    exit_code = 3
    http_status = 503
    code = "unavailable"
