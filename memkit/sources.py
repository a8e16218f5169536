"""Reading documents from what a user points memkit at: files, directories, JSONL streams and stdin.

Owns: turning paths and byte streams into ``SourceDocument`` objects, and reporting every input that cannot be
a document (empty, binary, not UTF-8, a malformed JSONL line, a JSONL object without ``text``) as an
``InputError`` that names the file and line. Problems are yielded, not raised, so a caller can keep the good
documents and report the bad ones. Knows nothing of models, methods or storage.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Iterator

from memkit.errors import InputError

TEXT_SUFFIXES = {".txt", ".text", ".md", ".markdown", ".rst"}
STREAM_SUFFIXES = {".jsonl", ".ndjson"}
FORMATS = ("auto", "text", "jsonl")
_RESERVED = {"text", "id", "source", "timestamp"}


@dataclass
class SourceDocument:
    """One document ready to be absorbed: its text and where it came from."""

    text: str
    source: str
    timestamp: str | None = None
    stream: str | None = None
    position: int | None = None
    external_id: str | None = None
    meta: dict = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def decode_text(data: bytes, source: str) -> str:
    """Decode a whole text document, refusing empty, binary and non-UTF-8 input with a clear reason."""
    if b"\x00" in data[:8192]:
        raise InputError("binary file (it contains NUL bytes); memkit ingests UTF-8 text", source=source)
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


def _timestamp(value, source: str, line: int) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InputError("'timestamp' must be a string or a number of seconds since 1970", source=source, line=line)
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=timezone.utc).isoformat()
    return value


def parse_jsonl_line(raw: bytes, source: str, line: int, stream: str | None, position: int) -> SourceDocument:
    """One JSONL line -> a SourceDocument (``text`` required; ``id``, ``source``, ``timestamp`` optional)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"not valid UTF-8 (offset {exc.start} in the line)", source=source, line=line) from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc.msg} at column {exc.colno})", source=source, line=line) from None
    if not isinstance(obj, dict):
        raise InputError("each line must be a JSON object with a 'text' field", source=source, line=line)
    body = obj.get("text")
    if not isinstance(body, str):
        missing = "has no 'text' field" if body is None else "has a 'text' that is not a string"
        raise InputError(f"the object {missing}", source=source, line=line)
    if not body.strip():
        raise InputError("'text' is empty", source=source, line=line)
    ext = obj.get("id")
    return SourceDocument(
        text=body,
        source=str(obj["source"]) if obj.get("source") is not None else f"{source}:{line}",
        timestamp=_timestamp(obj.get("timestamp"), source, line),
        stream=stream,
        position=position,
        external_id=None if ext is None else str(ext),
        meta={k: v for k, v in obj.items() if k not in _RESERVED},
    )


def read_jsonl(handle: BinaryIO, source: str, stream: str | None) -> Iterator[SourceDocument | InputError]:
    """Yield a document per good line and an InputError per bad one; blank lines are skipped."""
    position = 0
    for number, raw in enumerate(handle, start=1):
        if not raw.strip():
            continue
        try:
            yield parse_jsonl_line(raw, source, number, stream, position)
            position += 1
        except InputError as exc:
            yield exc


def _file_format(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    return "jsonl" if path.suffix.lower() in STREAM_SUFFIXES else "text"


def _walk(directory: Path) -> Iterator[Path]:
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_file() and path.suffix.lower() in TEXT_SUFFIXES | STREAM_SUFFIXES:
            yield path


def read_path(path: Path, *, stream: str | None, fmt: str) -> Iterator[SourceDocument | InputError]:
    """Documents of one file (a text document, or a JSONL stream of them)."""
    name = str(path)
    if _file_format(path, fmt) == "jsonl":
        with open(path, "rb") as handle:
            yield from read_jsonl(handle, name, stream or path.stem)
        return
    try:
        yield SourceDocument(text=decode_text(path.read_bytes(), name), source=name, stream=stream)
    except InputError as exc:
        yield exc


def iter_sources(paths: list[str], *, stream: str | None = None, fmt: str = "auto",
                 stdin: BinaryIO | None = None) -> Iterator[SourceDocument | InputError]:
    """Every document under ``paths`` in a stable order; ``-`` reads standard input.

    Directories are walked recursively for text, markdown and JSONL files (hidden ones skipped).
    A path that does not exist, or a file that cannot be a document, yields an InputError.
    """
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)} (--format)")
    for item in paths:
        if item == "-":
            handle = stdin if stdin is not None else sys.stdin.buffer
            if fmt == "jsonl":
                yield from read_jsonl(handle, "<stdin>", stream or "stdin")
            else:
                try:
                    yield SourceDocument(text=decode_text(handle.read(), "<stdin>"), source="<stdin>", stream=stream)
                except InputError as exc:
                    yield exc
            continue
        path = Path(item)
        if not path.exists():
            yield InputError("no such file or directory", source=item)
        elif path.is_dir():
            found = False
            for child in _walk(path):
                found = True
                yield from read_path(child, stream=stream, fmt=fmt)
            if not found:
                yield InputError("directory holds no text, markdown or JSONL files", source=item)
        else:
            yield from read_path(path, stream=stream, fmt=fmt)
