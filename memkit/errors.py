"""Domain errors of the memkit library.

Owns: the exception classes the library raises for ordinary mistakes (bad input, a model that cannot be
loaded, a bad configuration). Each message is one clear line that says what to do. The CLI maps these to an
exit code (``exit_code``) and prints the message without a traceback. Knows nothing of the CLI itself.
"""

from __future__ import annotations


class MemkitError(Exception):
    """Base of every error memkit reports to a user as one line."""

    exit_code = 1


class InputError(MemkitError):
    """A document or source that cannot be ingested (empty, binary, bad encoding, malformed JSONL...)."""

    exit_code = 2

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None):
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {message}" if where else message)
        self.source = source
        self.line = line
        self.reason = message


class ModelLoadError(MemkitError):
    """A model or tokenizer that cannot be loaded from the given hub id or path."""

    exit_code = 4


class ConfigError(MemkitError):
    """A configuration value that is invalid; the message names the option to change."""

    exit_code = 2
