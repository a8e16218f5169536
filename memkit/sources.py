"""Reading documents from what a user points memkit at: files, directories, JSONL streams and stdin.

Owns: turning paths and byte streams into ``SourceDocument`` objects within ``ReadLimits`` (both defined in
``memkit.documents``, with the checks every document passes), parsing a JSONL line (JSON as the standard has it:
no NaN, bounded numbers and nesting; ISO 8601 timestamps normalised to UTC), and reporting every input that
cannot be a document (empty, binary, not UTF-8, too large, a special file, a malformed JSONL line, a bad field)
as an ``InputError`` that names the file and line.
Problems are yielded, not raised, so a caller can keep the good documents and report the bad ones: whatever an
input holds, reading it yields documents and InputErrors and raises nothing else. Input is read as a stream in
bounded memory: at most one line (``max_line_bytes``) or one document (``max_doc_bytes``) plus a byte is held at
a time. Knows nothing of models, methods or storage.
"""

from __future__ import annotations

import codecs
import json
import math
import os
import stat
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO, Iterator

from memkit.documents import (DEFAULT_LIMITS, MAX_DEPTH, MAX_INT_DIGITS, MAX_TIMESTAMP_CHARS, KiB, MiB, ReadLimits,
                              SourceDocument, clip, format_size, too_large, validate_document)
from memkit.errors import InputError

__all__ = ["FORMATS", "ReadLimits", "SourceDocument", "decode_text", "iter_sources", "parse_jsonl_line",
           "parse_timestamp", "read_jsonl", "read_path", "validate_document"]

TEXT_SUFFIXES = {".txt", ".text", ".md", ".markdown", ".rst"}
STREAM_SUFFIXES = {".jsonl", ".ndjson"}
FORMATS = ("auto", "text", "jsonl")
_RESERVED = {"text", "id", "source", "timestamp"}
_SKIP_CHUNK = 64 * KiB          # the rest of an over-long line is read and dropped this much at a time
_READ_CHUNK = 1 * MiB           # a document is read this much at a time (a read of n bytes may allocate n at once)
_SNIFF = 8192                   # a NUL byte in the first this-many bytes makes a file binary

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MIN_SECONDS = int((datetime(1, 1, 1, tzinfo=timezone.utc) - _EPOCH).total_seconds())
_MAX_SECONDS = int((datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc) - _EPOCH).total_seconds())
_TIMESTAMP_FORMAT = ("use ISO 8601 (e.g. 2024-05-01, 2024-05-01T12:30:00Z or 2024-05-01T14:30:00+02:00) "
                     "or a number of seconds since 1970")

# ---- JSONL -------------------------------------------------------------------------------------------------------
class _NotJson(ValueError):
    """A value json.loads would accept that JSON (or memkit) does not: NaN, infinities, huge numbers."""


def _constant(name: str):
    raise _NotJson(f"{name} is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotJson(f"the number {clip(text)} is out of range")
    return value


def _int(text: str) -> int:
    if len(text) - text.startswith("-") > MAX_INT_DIGITS:
        raise _NotJson(f"a number of more than {MAX_INT_DIGITS} digits")
    return int(text)


def _loads(text: str, source: str, line: int):
    """json.loads that raises InputError and nothing else, refusing what is not JSON (NaN, Infinity)."""
    try:
        return json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except json.JSONDecodeError as exc:
        message = exc.msg.removesuffix(" at")           # "Invalid control character at" + our own column
        raise InputError(f"not valid JSON: {message} (column {exc.colno})", source=source, line=line) from None
    except _NotJson as exc:
        raise InputError(f"not valid JSON: {exc}", source=source, line=line) from None
    except RecursionError:
        raise InputError(f"not valid JSON for memkit: nested too deeply (at most {MAX_DEPTH} levels)",
                         source=source, line=line) from None
    except ValueError as exc:                           # anything else the decoder refuses
        raise InputError(f"not valid JSON: {clip(str(exc), 120)}", source=source, line=line) from None


def parse_timestamp(value) -> str | None:
    """A JSONL ``timestamp`` -> ISO 8601 in UTC (``2024-05-01T12:30:00+00:00``), or None when absent.

    A number is seconds since 1970 (finite, years 1 to 9999); a string is ISO 8601 as ``datetime.fromisoformat``
    reads it, a trailing ``Z`` meaning UTC and no offset read as UTC. Raises ValueError saying what is expected.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"'timestamp' must be a string or a number, not {type(value).__name__}; {_TIMESTAMP_FORMAT}")
    if isinstance(value, (int, float)):
        if not (math.isfinite(value) and _MIN_SECONDS <= value <= _MAX_SECONDS):
            shown = repr(value) if isinstance(value, float) or abs(value) < 10 ** 30 else "a huge number"
            raise ValueError(f"'timestamp' {shown} is out of range: seconds since 1970 must lie between "
                             f"{_MIN_SECONDS} and {_MAX_SECONDS} (the years 1 to 9999)")
        return (_EPOCH + timedelta(seconds=value)).isoformat()
    text = value.strip()
    if len(text) > MAX_TIMESTAMP_CHARS:
        raise ValueError(f"'timestamp' is longer than {MAX_TIMESTAMP_CHARS} characters; {_TIMESTAMP_FORMAT}")
    iso = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        moment = datetime.fromisoformat(iso)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.astimezone(timezone.utc).isoformat()
    except (ValueError, OverflowError):
        raise ValueError(f"'timestamp' {clip(value)!r} is not a date; {_TIMESTAMP_FORMAT}") from None


def _external_id(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"'id' must be a string or an integer, not {type(value).__name__}")
    return str(value)


def parse_jsonl_line(raw: bytes, source: str, line: int, stream: str | None, position: int,
                     limits: ReadLimits | None = None) -> SourceDocument:
    """One JSONL line -> a SourceDocument (``text`` required; ``id``, ``source``, ``timestamp`` optional; other
    fields kept as ``meta``). Raises InputError naming ``source:line``, and nothing else, whatever the line holds."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"not valid UTF-8 (offset {exc.start} in the line)", source=source, line=line) from None
    obj = _loads(text, source, line)
    if not isinstance(obj, dict):
        raise InputError("each line must be a JSON object with a 'text' field", source=source, line=line)
    body = obj.get("text")
    if not isinstance(body, str):
        missing = "has no 'text' field" if body is None else "has a 'text' that is not a string"
        raise InputError(f"the object {missing}", source=source, line=line)
    if not body.strip():
        raise InputError("'text' is empty", source=source, line=line)
    name = obj.get("source")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        why = "is empty" if isinstance(name, str) else f"must be a string, not {type(name).__name__}"
        raise InputError(f"'source' {why}; leave it out to name the document by its file and line",
                         source=source, line=line)
    try:
        timestamp = parse_timestamp(obj.get("timestamp"))
        external_id = _external_id(obj.get("id"))
    except ValueError as exc:
        raise InputError(str(exc), source=source, line=line) from None
    doc = SourceDocument(
        text=body,
        source=name if name is not None else f"{source}:{line}",
        timestamp=timestamp,
        stream=stream,
        position=position,
        external_id=external_id,
        meta={k: v for k, v in obj.items() if k not in _RESERVED},
    )
    return validate_document(doc, limits, source=source, line=line)


# ---- bounded reading ---------------------------------------------------------------------------------------------
class _InputSpent(Exception):
    """More than ``max_input_bytes`` were read in this ingest; reading stops."""

    def __init__(self, source: str | None = None, line: int | None = None):
        super().__init__()
        self.source = source
        self.line = line


class _Budget:
    """The bytes one ingest may still read; every read of every source goes through it."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0

    def _want(self, size: int) -> int:
        return min(size, self.limit - self.used + 1)     # one byte past the budget tells that it was passed

    def read(self, handle: BinaryIO, size: int) -> bytes:
        """Up to ``size`` bytes (fewer only at the end of the input)."""
        want = self._want(size)
        parts, got = [], 0
        while got < want:
            chunk = handle.read(min(want - got, _READ_CHUNK))
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
            self.used += len(chunk)
        if self.used > self.limit:
            raise _InputSpent()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readline(self, handle: BinaryIO, size: int) -> bytes:
        """One line with its newline, or its first ``size`` bytes if it is longer."""
        data = handle.readline(self._want(size))
        self.used += len(data)
        if self.used > self.limit:
            raise _InputSpent()
        return data


def read_jsonl(handle: BinaryIO, source: str, stream: str | None, *, limits: ReadLimits | None = None,
               budget: _Budget | None = None) -> Iterator[SourceDocument | InputError]:
    """Yield a document per good line and an InputError per bad one; blank lines are skipped.

    Lines are read one at a time with at most ``limits.line_bytes`` + 1 bytes in memory; a longer line is
    reported (naming --max-line-bytes) and the rest of it skipped, and reading goes on with the next line.
    """
    limits = limits or DEFAULT_LIMITS
    budget = budget or _Budget(limits.max_input_bytes)
    line_limit = limits.line_bytes
    position, number = 0, 0
    while True:
        try:
            raw = budget.readline(handle, line_limit + 1)
        except _InputSpent:
            raise _InputSpent(source, number + 1) from None
        if not raw:
            return
        number += 1
        if len(raw) > line_limit and not raw.endswith(b"\n"):
            tail = raw
            del raw
            try:
                while tail and not tail.endswith(b"\n"):
                    tail = budget.readline(handle, _SKIP_CHUNK)
            except _InputSpent:
                raise _InputSpent(source, number) from None
            yield InputError(f"line longer than the {format_size(line_limit)} limit (--max-line-bytes); skipped",
                             source=source, line=number)
            continue
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8):]
        if not raw.strip():
            continue
        try:
            yield parse_jsonl_line(raw, source, number, stream, position, limits)
            position += 1
        except InputError as exc:
            yield exc


def decode_text(data: bytes, source: str, max_bytes: int | None = None) -> str:
    """Decode a whole text document, refusing empty, binary, too large (over ``max_bytes``) and non-UTF-8 input
    with a clear reason."""
    if b"\x00" in data[:_SNIFF]:
        raise InputError("binary file (it contains NUL bytes); memkit ingests UTF-8 text", source=source)
    if max_bytes is not None and len(data) > max_bytes:
        raise InputError(too_large(max_bytes), source=source)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad = data[exc.start:exc.start + 1].hex()
        raise InputError(
            f"not valid UTF-8 (byte 0x{bad} at offset {exc.start}); convert it first, "
            "e.g. iconv -f latin1 -t utf-8", source=source) from None
    if not text.strip():
        raise InputError("empty document (nothing but whitespace)", source=source)
    return text


def _read_document(handle: BinaryIO, name: str, stream: str | None, limits: ReadLimits,
                   budget: _Budget) -> SourceDocument | InputError:
    """A whole text document from ``handle``, with at most ``max_doc_bytes`` + 1 bytes read."""
    try:
        data = budget.read(handle, limits.max_doc_bytes + 1)
    except _InputSpent:
        raise _InputSpent(name) from None
    try:
        text = decode_text(data, name, limits.max_doc_bytes)
        del data
        return validate_document(SourceDocument(text=text, source=name, stream=stream), limits, source=name)
    except InputError as exc:
        return exc


def _file_format(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    return "jsonl" if path.suffix.lower() in STREAM_SUFFIXES else "text"


def _display(path) -> str:
    """A path as text that can be printed and stored (undecodable bytes of a file name shown as U+FFFD)."""
    return os.fsencode(path).decode("utf-8", "replace")


_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _special(mode: int) -> str | None:
    """What kind of special file ``mode`` is ("a FIFO (named pipe)", ...), or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def _refuse_special(kind: str, name: str) -> InputError:
    return InputError(f"{kind}, not a regular file; memkit reads special files only with --allow-special",
                      source=name)


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _open(path: Path, limits: ReadLimits) -> BinaryIO:
    """``path`` opened for reading. Without allow_special it is opened non-blocking and checked again, so a file
    that became a FIFO since it was looked at is refused, never waited on."""
    if limits.allow_special:
        return open(path, "rb")
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        kind = _special(os.fstat(fd).st_mode)
        if kind is not None:
            raise _refuse_special(kind, _display(path))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _walk(directory: Path) -> Iterator[Path]:
    """The regular text, markdown and JSONL files under ``directory`` (hidden ones and special files skipped)."""
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.suffix.lower() in TEXT_SUFFIXES | STREAM_SUFFIXES and path.is_file():   # is_file: regular only
            yield path


def read_path(path: Path, *, stream: str | None, fmt: str, limits: ReadLimits | None = None,
              budget: _Budget | None = None) -> Iterator[SourceDocument | InputError]:
    """Documents of one file (a text document, or a JSONL stream of them), read within ``limits``."""
    limits = limits or DEFAULT_LIMITS
    budget = budget or _Budget(limits.max_input_bytes)
    name = _display(path)
    try:
        info = os.stat(path)
        kind = _special(info.st_mode)
        if kind is not None and not limits.allow_special:
            yield _refuse_special(kind, name)
            return
        jsonl = _file_format(path, fmt) == "jsonl"
        if not jsonl and kind is None and info.st_size > limits.max_doc_bytes:
            yield InputError(too_large(limits.max_doc_bytes, info.st_size), source=name)
            return
        with _open(path, limits) as handle:
            if jsonl:
                yield from read_jsonl(handle, name, stream or _display(path.stem), limits=limits, budget=budget)
            else:
                yield _read_document(handle, name, stream, limits, budget)
    except InputError as exc:
        yield exc
    except OSError as exc:
        yield InputError(f"cannot read it ({_reason(exc)})", source=name)


def _read_item(item: str, stream: str | None, fmt: str, stdin: BinaryIO | None, limits: ReadLimits,
               budget: _Budget) -> Iterator[SourceDocument | InputError]:
    if item == "-":
        handle = stdin if stdin is not None else getattr(sys.stdin, "buffer", None)
        if handle is None:
            yield InputError("there is no standard input to read", source="<stdin>")
            return
        try:
            if fmt == "jsonl":
                yield from read_jsonl(handle, "<stdin>", stream or "stdin", limits=limits, budget=budget)
            else:
                yield _read_document(handle, "<stdin>", stream, limits, budget)
        except OSError as exc:
            yield InputError(f"cannot read it ({_reason(exc)})", source="<stdin>")
        return
    name = _display(item)
    try:
        info = os.stat(item)
    except FileNotFoundError:
        yield InputError("no such file or directory", source=name)
        return
    except (OSError, ValueError) as exc:             # ValueError: a NUL in the path
        yield InputError(f"cannot read it ({_reason(exc) if isinstance(exc, OSError) else exc})", source=name)
        return
    path = Path(item)
    if stat.S_ISDIR(info.st_mode):
        found = False
        try:
            for child in _walk(path):
                found = True
                yield from read_path(child, stream=stream, fmt=fmt, limits=limits, budget=budget)
        except OSError as exc:
            yield InputError(f"cannot walk it ({_reason(exc)})", source=name)
            return
        if not found:
            yield InputError("directory holds no text, markdown or JSONL files", source=name)
    else:
        yield from read_path(path, stream=stream, fmt=fmt, limits=limits, budget=budget)


def iter_sources(paths: list[str], *, stream: str | None = None, fmt: str = "auto", stdin: BinaryIO | None = None,
                 limits: ReadLimits | None = None) -> Iterator[SourceDocument | InputError]:
    """Every document under ``paths`` in a stable order; ``-`` reads standard input (``stdin`` if given).

    Directories are walked recursively for text, markdown and JSONL files (hidden ones and special files
    skipped). A path that does not exist, a special file (unless ``limits.allow_special``), or a file that cannot
    be a document yields an InputError. Everything is read within ``limits`` (``ReadLimits()`` by default); once
    more than ``max_input_bytes`` have been read, one InputError says so and nothing more is read.
    """
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)} (--format)")
    limits = limits or DEFAULT_LIMITS
    budget = _Budget(limits.max_input_bytes)
    for item in paths:
        try:
            yield from _read_item(item, stream, fmt, stdin, limits, budget)
        except _InputSpent as spent:
            yield InputError(f"more than {format_size(limits.max_input_bytes)} read in this ingest, the limit "
                             "(--max-input-bytes); reading stopped here, what was read before is kept",
                             source=spent.source or ("<stdin>" if item == "-" else _display(item)), line=spent.line)
            return
