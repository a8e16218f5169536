"""A document as memkit takes it in, the limits of reading one, and the checks every document passes.

Owns: ``SourceDocument`` (a text and where it came from), ``ReadLimits`` (the longest JSONL line, the largest
document, the bytes one ingest may read, whether special files may be read; with ``parse_size`` and
``format_size`` for the flags that set them), and ``validate_document``, the one place a document's final
checks live whoever built it (the readers of ``memkit.sources`` and ``Engine.ingest`` both apply it). Each
refusal is an ``InputError`` that says why and, for a limit, names the flag that raises it. Knows nothing of
files, models, methods or storage.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field

from memkit.errors import ConfigError, InputError

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
DEFAULT_MAX_DOC_BYTES = 8 * MiB
"""A document's text, as UTF-8: 8 MiB is a long book (War and Peace is 3.2 MiB) yet small next to what encoding
it costs a model in memory; a larger one is refused, naming --max-doc-bytes, never truncated."""
DEFAULT_LINE_FACTOR = 4
"""The default longest JSONL line is this many times the document limit: JSON's escapes (``\\n``, ``\\uXXXX`` of
ensure_ascii writers) make a line up to about three times its text's UTF-8 bytes, plus the other fields."""
DEFAULT_MAX_INPUT_BYTES = 4 * GiB
"""All bytes one ingest reads: more text than memkit encodes in hours, small enough that an endless input (a
pipe from /dev/zero, a log that never ends) stops within seconds of reading instead of running forever."""
MAX_NAME_CHARS = 200
"""``stream`` and ``id`` (external_id): the store keeps them in 200-character columns."""
MAX_SOURCE_CHARS = 8192
"""``source``: a path (PATH_MAX is 4096 bytes), a URL or a name; longer is not a name."""
MAX_TIMESTAMP_CHARS = 64
"""``timestamp``: the store keeps it in a 64-character column."""
MAX_DEPTH = 32
"""How deep the other fields of a JSONL object (a document's ``meta``) may nest lists and objects."""
MAX_INT_DIGITS = 4300
"""The longest integer memkit reads from JSON (Python's own limit for converting integers to and from text)."""
_MAX_INT = 10 ** MAX_INT_DIGITS
_MAX_LIMIT = 1 << 50            # no limit above 1 PiB: beyond what any machine reads, within what a read takes
MAX_DOC_LIMIT = 512 * MiB
"""The most ``--max-doc-bytes`` may be: SQLite keeps a text of at most 10^9 bytes, and a document far larger
than the default costs memory in proportion while it is ingested."""
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def format_size(n: int) -> str:
    """A byte count as people read it: ``8 MiB``, ``1.5 GiB``, ``1000 bytes``."""
    for unit, name in ((1 << 50, "PiB"), (1 << 40, "TiB"), (GiB, "GiB"), (MiB, "MiB"), (KiB, "KiB")):
        if n >= unit:
            return f"{n // unit} {name}" if n % unit == 0 else f"{n / unit:.1f} {name}"
    return f"{n} byte" if n == 1 else f"{n} bytes"


_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``"8388608"``, ``"512K"``, ``"64M"``/``"64MiB"`` (powers of 1024) or ``"64MB"`` (powers of 1000) -> bytes.

    Raises ValueError with a message saying what is expected.
    """
    match = _SIZE.match(str(text))
    if match is None or (match.group(3) and not match.group(2)):
        raise ValueError(f"{text!r} is not a size; give bytes or a number with a unit: 512K, 64M (MiB), 2G (GiB), 64MB")
    number, unit, tail = int(match.group(1)), match.group(2).lower(), match.group(3).lower()
    base = 1000 if tail == "b" else 1024
    return number * base ** "_kmgt".index(unit) if unit else number


@dataclass(frozen=True)
class ReadLimits:
    """What one ingest may read, and how much of it at a time; checked here, once, when it is made.

    Each refusal names the flag of the limit it hit, so a user can raise it. The bytes read and held at a time
    are bounded by ``max(max_doc_bytes, line_bytes)`` whatever the input; what they become once parsed is
    bounded by them in turn (a JSONL line of nested empty lists costs some 25 times its bytes as Python
    objects), and a document then costs what its method makes of it.
    """

    max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES
    """Largest document, in UTF-8 bytes of its text (``--max-doc-bytes``). A text file or stdin is read with at
    most this plus one byte in memory and refused, never truncated, when larger; so is a JSONL document's text."""
    max_line_bytes: int | None = None
    """Longest JSONL line in bytes, without its newline (``--max-line-bytes``); None: ``DEFAULT_LINE_FACTOR``
    times ``max_doc_bytes``. A longer line is refused and its rest skipped in bounded memory; reading goes on
    with the next line."""
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES
    """Most bytes read in one ingest, over every source together (``--max-input-bytes``). Once passed, the
    input being read is refused and reading stops; what was read before is kept."""
    allow_special: bool = False
    """Read a FIFO, character or block device or socket named as a source (``--allow-special``); otherwise it is
    refused without being opened. Directories never yield special files. Stdin (``-``) is always read."""

    def __post_init__(self):
        for name, flag in (("max_doc_bytes", "--max-doc-bytes"), ("max_line_bytes", "--max-line-bytes"),
                           ("max_input_bytes", "--max-input-bytes")):
            value = getattr(self, name)
            if value is None and name == "max_line_bytes":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{flag} must be a whole number of bytes of at least 1, not {value!r}")
            top = MAX_DOC_LIMIT if name == "max_doc_bytes" else _MAX_LIMIT
            if value > top:
                raise ConfigError(f"{flag} must be at most {format_size(top)}, not {value}")
        if not isinstance(self.allow_special, bool):
            raise ConfigError(f"allow_special (--allow-special) must be True or False, not {self.allow_special!r}")

    @property
    def line_bytes(self) -> int:
        """The longest JSONL line, with the default applied."""
        return self.max_line_bytes if self.max_line_bytes is not None else DEFAULT_LINE_FACTOR * self.max_doc_bytes


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


# ---- the checks every document passes ----------------------------------------------------------------------------
def clip(text: str, n: int = 40) -> str:
    """``text`` cut to ``n`` characters for a message (with "..." when cut)."""
    return text if len(text) <= n else text[:n] + "..."


def _string_problem(value: str) -> str | None:
    """Why ``value`` is not valid Unicode text (a lone surrogate cannot be written as UTF-8), or None."""
    found = _SURROGATE.search(value)
    if found:
        return (f"contains a lone surrogate (\\u{ord(found.group()):04x} at character {found.start()}), "
                "which is not valid Unicode")
    return None


def _name_problem(value, limit: int) -> str | None:
    """Why ``value`` cannot be a one-line name of at most ``limit`` characters, or None."""
    if not isinstance(value, str):
        return f"must be a string, not {type(value).__name__}"
    if not value.strip():
        return "is empty"
    if len(value) > limit:
        return f"is longer than {limit} characters"
    problem = _string_problem(value)
    if problem:
        return problem
    found = _CONTROL.search(value)
    if found:
        return f"contains a control character (\\x{ord(found.group()):02x} at character {found.start()})"
    return None


def _json_problem(value, depth: int) -> str | None:
    """Why ``value`` cannot be kept as JSON (not JSON, not finite, not valid Unicode, nested too deep), or None."""
    if depth > MAX_DEPTH:
        return f"is nested too deeply (at most {MAX_DEPTH} levels)"
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return _string_problem(value)
    if isinstance(value, int):
        return None if -_MAX_INT < value < _MAX_INT else f"holds an integer of more than {MAX_INT_DIGITS} digits"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"holds {value!r}, which is not a JSON number"
    if isinstance(value, (list, tuple)):
        for item in value:
            problem = _json_problem(item, depth + 1)
            if problem:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"has a key that is not a string ({type(key).__name__})"
            problem = _string_problem(key) or _json_problem(item, depth + 1)
            if problem:
                return problem
        return None
    return f"holds a value of type {type(value).__name__}, which is not JSON"


def too_large(limit: int, size: int | None = None, unit: str = "bytes") -> str:
    """The refusal of a document over ``max_doc_bytes``, naming the flag that raises it."""
    has = f"; it has {size:,} {unit}" if size is not None else ""
    return f"larger than the {format_size(limit)} limit (--max-doc-bytes){has}; raise the limit to ingest it"


def validate_document(doc, limits: ReadLimits | None = None, *, source: str | None = None,
                      line: int | None = None) -> SourceDocument:
    """``doc`` itself when it can be stored as it is; otherwise an InputError saying why.

    The one place a document's final checks live, whoever built it: the text is a non-empty string of valid
    Unicode (no lone surrogates), free of NUL characters (as text files are), at most ``max_doc_bytes`` as
    UTF-8; ``source`` a non-empty one-line string, ``stream`` and ``external_id`` one-line names that fit the
    store's columns, ``timestamp`` a short one-line string (readers normalise it to ISO 8601; it is not parsed
    here), ``position`` a non-negative int, ``meta`` a JSON object of bounded depth. The error names ``source``
    (and ``line``) when given, else the document's own source when that is usable, else nothing.
    """
    limits = limits or DEFAULT_LIMITS
    if not isinstance(doc, SourceDocument):
        raise InputError(f"not a SourceDocument but a {type(doc).__name__}", source=source, line=line)
    source_problem = _name_problem(doc.source, MAX_SOURCE_CHARS)
    where = source if source is not None else (doc.source if source_problem is None else None)

    def refuse(message: str):
        raise InputError(message, source=where, line=line if source is not None else None)

    if source_problem:
        refuse(f"'source' {source_problem}")
    text = doc.text
    if not isinstance(text, str):
        refuse(f"the text must be a string, not {type(text).__name__}")
    if len(text) > limits.max_doc_bytes:           # every character is at least one byte: no need to encode
        refuse(too_large(limits.max_doc_bytes, len(text), "characters"))
    problem = _string_problem(text)
    if problem:
        refuse(f"the text {problem}")
    nul = text.find("\x00")
    if nul >= 0:
        refuse(f"the text contains a NUL character (at character {nul}); memkit ingests text, not binary data")
    size = len(text.encode("utf-8"))
    if size > limits.max_doc_bytes:
        refuse(too_large(limits.max_doc_bytes, size))
    if not text.strip():
        refuse("the text is empty (nothing but whitespace)")
    for label, value, limit in (("'timestamp'", doc.timestamp, MAX_TIMESTAMP_CHARS),
                                ("the stream name (--stream)", doc.stream, MAX_NAME_CHARS),
                                ("'id'", doc.external_id, MAX_NAME_CHARS)):
        if value is not None:
            problem = _name_problem(value, limit)
            if problem:
                refuse(f"{label} {problem}")
    position = doc.position
    if position is not None and (isinstance(position, bool) or not isinstance(position, int) or position < 0):
        refuse(f"the position must be a whole number of at least 0, not {position!r}")
    if not isinstance(doc.meta, dict):
        refuse(f"meta must be a dict, not {type(doc.meta).__name__}")
    for key, value in doc.meta.items():
        if not isinstance(key, str):
            refuse(f"meta has a key that is not a string ({type(key).__name__})")
        problem = _string_problem(key) or _json_problem(value, 1)
        if problem:
            refuse(f"field {clip(key)!r} {problem}")
    return doc


def validate_question(question) -> str:
    """``question`` itself when a model can read it: a non-empty string of valid Unicode (a lone surrogate, e.g.
    from a byte of the command line that is not UTF-8, cannot be tokenized); otherwise an InputError."""
    if not isinstance(question, str):
        raise InputError(f"the question must be a string, not {type(question).__name__}")
    if not question.strip():
        raise InputError("the question is empty")
    problem = _string_problem(question)
    if problem:
        raise InputError(f"the question {problem}; pass it as UTF-8 text")
    return question


DEFAULT_LIMITS = ReadLimits()
"""The limits used when none are given."""
