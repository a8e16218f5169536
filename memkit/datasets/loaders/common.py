"""Plumbing every dataset loader shares: reading local files, checking fields, one error shape.

Owns: ``DatasetError`` (a ``ValueError`` that names the dataset, the path, where in the file, what is wrong
and what was expected), opening plain or gzipped local files, reading JSON / JSONL / CSV, typed field
access, timestamp normalisation to ISO 8601, and the ``limit`` and document-selection rules. Knows nothing
of models, methods or storage, and never touches the network: a loader reads only the files it is given.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, TextIO

from memkit.datasets.records import BenchQuestion
from memkit.documents import SourceDocument


class DatasetError(ValueError):
    """A dataset file that is missing or not of the shape its loader reads."""

    def __init__(self, dataset: str, path: str | Path, problem: str, *, expected: str | None = None,
                 where: str | None = None):
        place = f"{path}" if where is None else f"{path} ({where})"
        message = f"{dataset}: {place}: {problem}"
        if expected:
            message += f"; expected {expected}"
        super().__init__(message)
        self.dataset = dataset
        self.path = str(path)
        self.problem = problem
        self.expected = expected
        self.where = where


def require_path(dataset: str, path: str | Path, expected: str) -> Path:
    """The path as a ``Path``, or a DatasetError saying it does not exist and what should be there."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetError(dataset, p, "no such file or directory", expected=expected)
    return p


def open_text(path: Path) -> TextIO:
    """Open a local UTF-8 text file, transparently un-gzipping ``*.gz``."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _read_failure(dataset: str, path: Path, exc: Exception, expected: str) -> DatasetError:
    if isinstance(exc, UnicodeDecodeError):
        return DatasetError(dataset, path, "not UTF-8 text", expected=expected)
    return DatasetError(dataset, path, f"cannot be read ({exc})", expected=expected)


def read_json(dataset: str, path: Path, expected: str) -> Any:
    """One whole JSON document."""
    if path.is_dir():
        raise DatasetError(dataset, path, "is a directory", expected=expected)
    try:
        with open_text(path) as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise DatasetError(dataset, path, f"not valid JSON ({exc.msg})",
                           where=f"line {exc.lineno} column {exc.colno}", expected=expected) from None
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise _read_failure(dataset, path, exc, expected) from None


def iter_jsonl(dataset: str, path: Path, expected: str) -> Iterator[tuple[str, dict]]:
    """``(where, object)`` for each non-blank line; a line that is not a JSON object is an error."""
    if path.is_dir():
        raise DatasetError(dataset, path, "is a directory", expected=expected)
    try:
        with open_text(path) as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                where = f"line {number}"
                try:
                    obj = json.loads(raw)
                except json.JSONDecodeError as exc:
                    raise DatasetError(dataset, path, f"not valid JSON ({exc.msg})", where=where,
                                       expected=expected) from None
                if not isinstance(obj, dict):
                    raise DatasetError(dataset, path, "the line is not a JSON object", where=where,
                                       expected=expected)
                yield where, obj
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise _read_failure(dataset, path, exc, expected) from None


def read_csv(dataset: str, path: Path, required: Iterable[str],
             expected: str) -> tuple[list[str], list[tuple[str, dict]]]:
    """The header and ``(where, row)`` pairs of a CSV with a header line; refuses missing columns."""
    if path.is_dir():
        raise DatasetError(dataset, path, "is a directory", expected=expected)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        with open_text(path) as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            missing = [c for c in required if c not in header]
            if missing:
                found = ", ".join(header) if header else "nothing"
                raise DatasetError(dataset, path, f"no column {missing[0]!r} in the header (found: {found})",
                                   expected=expected)
            rows = [(f"row {n}", row) for n, row in enumerate(reader, start=2)]
    except csv.Error as exc:
        raise DatasetError(dataset, path, f"not valid CSV ({exc})", expected=expected) from None
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise _read_failure(dataset, path, exc, expected) from None
    return header, rows


def field(obj: Any, name: str, kind: type | tuple[type, ...], *, dataset: str, path: Path, where: str,
          expected: str, nonempty: bool = False, default: Any = ...) -> Any:
    """``obj[name]`` checked to be of ``kind`` (bools never pass as numbers); absent -> ``default`` or an error."""
    if not isinstance(obj, dict):
        raise DatasetError(dataset, path, "not a JSON object", where=where, expected=expected)
    if name not in obj or obj[name] is None:
        if default is not ...:
            return default
        raise DatasetError(dataset, path, f"missing field {name!r}", where=where, expected=expected)
    value = obj[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise DatasetError(dataset, path, f"field {name!r} is of type {type(value).__name__}, not {names}",
                           where=where, expected=expected)
    if nonempty and not (value.strip() if isinstance(value, str) else value):
        raise DatasetError(dataset, path, f"field {name!r} is empty", where=where, expected=expected)
    return value


def string_list(value: Any, name: str, *, dataset: str, path: Path, where: str, expected: str) -> list[str]:
    """A list of strings (a lone string is taken as a one-item list)."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DatasetError(dataset, path, f"field {name!r} is not a list of strings", where=where,
                           expected=expected)
    return list(value)


def iso_timestamp(value: Any) -> str:
    """Seconds since 1970 or an ISO 8601 string -> one canonical UTC form, ``2020-03-02T00:00:00+00:00``.

    One form for every loader means timestamps also order correctly as strings. Raises ValueError.
    """
    return time_key(value).astimezone(timezone.utc).isoformat()


def time_key(value: Any) -> datetime:
    """A timezone-aware datetime for ordering; naive ISO strings are read as UTC. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a timestamp")
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    if not isinstance(value, str):
        raise ValueError(f"a {type(value).__name__} is not a timestamp")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def check_count(dataset: str, name: str, value: Any, *, minimum: int = 1, optional: bool = True) -> int | None:
    """An int >= minimum (or ``None`` when optional); anything else is a DatasetError naming the option."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DatasetError(dataset, f"option {name}", f"{value!r} is not a whole number >= {minimum}",
                           expected=f"{name}=N with N >= {minimum}")
    return value


def take(questions: list[BenchQuestion], limit: int | None) -> list[BenchQuestion]:
    """The first ``limit`` questions (all of them when ``limit`` is None)."""
    return questions if limit is None else questions[:limit]


def needed_documents(documents: list[SourceDocument], questions: list[BenchQuestion]) -> list[SourceDocument]:
    """The documents some question cites, in their original order."""
    cited = {doc_id for q in questions for doc_id in q.doc_ids}
    return [d for d in documents if d.external_id in cited]


def pick_file(dataset: str, directory: Path, candidates: list[Path], split: str | None, expected: str) -> Path:
    """Choose one data file in a directory: the only candidate, else the one whose name holds ``split``."""
    if len(candidates) == 1:
        return candidates[0]
    chosen = [c for c in candidates if split and split in c.name] if candidates else []
    if len(chosen) == 1:
        return chosen[0]
    names = ", ".join(c.name for c in candidates) or "none"
    problem = (f"{len(chosen)} files match split {split!r} (candidates: {names})" if candidates
               else "no data file in the directory")
    raise DatasetError(dataset, directory, problem, expected=expected)
