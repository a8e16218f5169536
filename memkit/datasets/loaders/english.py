"""memkit's own English question set: fictional documents written by hand for memkit, and questions about them.

Owns: reading a folder laid out like ``experiments/data/english/`` (``experiments.bench.benchmarks.ENGLISH_DATA``) into
a ``Benchmark``: ``documents.jsonl`` (``id``, ``text``, ``timestamp``, ``source``: the JSONL ``memkit ingest``
reads) and ``questions.jsonl`` (``id``, ``question``, ``answers``, ``doc_ids``, ``type``, ``as_of`` for as-of
questions, ``bridge`` for two-document ones), plain or gzipped. Knows nothing of models, methods or storage.

Mapping: the documents form a stream ordered by timestamp (file order breaks ties); other fields go to
``meta``. Each question keeps its ``type``: ``single`` (one document holds the answer), ``two_doc`` (the
question names an entity of the first document, the answer lies in the second, reached through a bridge
entity the question does not name; ``bridge`` goes to ``meta``) or ``as_of`` (a fact that a later document
updates; ``as_of`` becomes the question's ``timestamp``, normalised to ISO 8601 UTC, and the gold document is
the one in force at that date). ``limit`` keeps the first N questions and the documents they cite; a kept
as-of question also keeps the documents that its other-dated twin (same question text) cites, so the
superseded or superseding version of the fact stays in the stream.
"""

from __future__ import annotations

from pathlib import Path

from memkit.datasets.records import BenchQuestion, Benchmark, bench_document
from memkit.documents import SourceDocument
from memkit.datasets.loaders.common import (
    DatasetError, check_count, field, iso_timestamp, iter_jsonl, require_path, string_list, take, time_key,
)

NAME = "english"
EXPECTED = ("a folder holding documents.jsonl ({id, text, timestamp, source}) and questions.jsonl ({id, "
            "question, answers, doc_ids, type, as_of}), such as experiments/data/english")
DOCUMENTS_EXPECTED = ("one JSON object per line with id (str), text (str), timestamp (ISO 8601 date or int "
                      "seconds) and optionally source (str)")
QUESTIONS_EXPECTED = ("one JSON object per line with id (str), question (str), answers (list of str), doc_ids "
                      "(list of document ids), type (single, two_doc or as_of) and, for as_of, as_of (a date)")
TYPES = ("single", "two_doc", "as_of")
_DOC_NAMES = ("documents.jsonl", "documents.jsonl.gz")
_QUESTION_NAMES = ("questions.jsonl", "questions.jsonl.gz")


def load(path: str | Path, *, limit: int | None = None) -> Benchmark:
    """Read the folder's documents and questions; ``limit`` keeps the first N questions (and their documents)."""
    limit = check_count(NAME, "limit", limit)
    folder = require_path(NAME, path, EXPECTED)
    if not folder.is_dir():
        raise DatasetError(NAME, folder, "not a folder", expected=EXPECTED)
    documents_path = _find(folder, _DOC_NAMES)
    questions_path = _find(folder, _QUESTION_NAMES)

    stream = _read_documents(documents_path)
    by_id = {d.external_id: d for d in stream}
    questions = _read_questions(questions_path, by_id)
    kept = take(questions, limit)
    counts = {kind: sum(1 for q in kept if q.type == kind) for kind in TYPES}
    meta = {"path": str(folder), "documents_path": str(documents_path), "questions_path": str(questions_path),
            "stream": True, "counts": counts, "options": {"limit": limit}}
    return Benchmark(name=NAME, documents=_select(stream, kept, questions), questions=kept, meta=meta)


def _find(folder: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise DatasetError(NAME, folder, f"no {names[0]} in the folder", expected=EXPECTED)


def _read_documents(path: Path) -> list[SourceDocument]:
    ctx = {"dataset": NAME, "path": path, "expected": DOCUMENTS_EXPECTED}
    rows: list[tuple[object, int, SourceDocument]] = []
    seen: set[str] = set()
    for where, obj in iter_jsonl(NAME, path, DOCUMENTS_EXPECTED):
        doc_id = field(obj, "id", str, where=where, nonempty=True, **ctx)
        text = field(obj, "text", str, where=where, nonempty=True, **ctx)
        stamp = field(obj, "timestamp", (str, int), where=where, **ctx)
        source = field(obj, "source", str, where=where, nonempty=True, default=doc_id, **ctx)
        try:
            moment = time_key(stamp)
        except (ValueError, OverflowError, OSError):
            raise DatasetError(NAME, path, f"timestamp {stamp!r} is not a date", where=where,
                               expected=DOCUMENTS_EXPECTED) from None
        if doc_id in seen:
            raise DatasetError(NAME, path, f"document id {doc_id!r} appears twice", where=where,
                               expected="unique document ids")
        seen.add(doc_id)
        meta = {k: v for k, v in obj.items() if k not in ("id", "text", "timestamp", "source")}
        rows.append((moment, len(rows), bench_document(id=doc_id, text=text, timestamp=iso_timestamp(stamp),
                                                      source=source, meta=meta)))
    if not rows:
        raise DatasetError(NAME, path, "no documents in the file", expected=DOCUMENTS_EXPECTED)
    rows.sort(key=lambda r: (r[0], r[1]))
    return [r[2] for r in rows]


def _read_questions(path: Path, documents: dict[str, SourceDocument]) -> list[BenchQuestion]:
    questions: list[BenchQuestion] = []
    seen: set[str] = set()
    for where, obj in iter_jsonl(NAME, path, QUESTIONS_EXPECTED):
        question = _question(obj, path, where, documents)
        if question.id in seen:
            raise DatasetError(NAME, path, f"question id {question.id!r} appears twice", where=where,
                               expected="unique question ids")
        seen.add(question.id)
        questions.append(question)
    if not questions:
        raise DatasetError(NAME, path, "no questions in the file", expected=QUESTIONS_EXPECTED)
    return questions


def _question(obj: dict, path: Path, where: str, documents: dict[str, SourceDocument]) -> BenchQuestion:
    ctx = {"dataset": NAME, "path": path, "where": where, "expected": QUESTIONS_EXPECTED}
    qid = field(obj, "id", str, nonempty=True, **ctx)
    text = field(obj, "question", str, nonempty=True, **ctx)
    answers = [a for a in string_list(field(obj, "answers", (list, str), **ctx), "answers", **ctx) if a.strip()]
    if not answers:
        raise DatasetError(NAME, path, "field 'answers' holds no non-empty answer", where=where,
                           expected=QUESTIONS_EXPECTED)
    doc_ids = string_list(field(obj, "doc_ids", (list, str), **ctx), "doc_ids", **ctx)
    if not doc_ids:
        raise DatasetError(NAME, path, "field 'doc_ids' is empty", where=where, expected=QUESTIONS_EXPECTED)
    missing = [d for d in doc_ids if d not in documents]
    if missing:
        raise DatasetError(NAME, path, f"doc_ids names {missing[0]!r}, which is not in documents.jsonl",
                           where=where, expected=QUESTIONS_EXPECTED)
    kind = field(obj, "type", str, default="single", **ctx)
    if kind not in TYPES:
        raise DatasetError(NAME, path, f"type {kind!r} is not one of {', '.join(TYPES)}", where=where,
                           expected=QUESTIONS_EXPECTED)
    if kind == "two_doc" and len(doc_ids) != 2:
        raise DatasetError(NAME, path, f"a two_doc question cites {len(doc_ids)} documents, not 2", where=where,
                           expected="doc_ids = [the document the question names, the document with the answer]")
    as_of = field(obj, "as_of", (str, int), default=None, **ctx)
    if kind == "as_of" and as_of is None:
        raise DatasetError(NAME, path, "an as_of question has no 'as_of' date", where=where,
                           expected=QUESTIONS_EXPECTED)
    asked = None
    if as_of is not None:
        try:
            asked = iso_timestamp(as_of)
        except (ValueError, OverflowError, OSError):
            raise DatasetError(NAME, path, f"as_of {as_of!r} is not a date", where=where,
                               expected=QUESTIONS_EXPECTED) from None
        later = [d for d in doc_ids if documents[d].timestamp > asked]
        if later:
            raise DatasetError(NAME, path, f"document {later[0]!r} is dated {documents[later[0]].timestamp}, "
                               f"after the question's as_of {asked}", where=where,
                               expected="evidence dated on or before as_of")
    meta = {k: v for k, v in obj.items() if k not in ("id", "question", "answers", "doc_ids", "type", "as_of")}
    return BenchQuestion(id=qid, question=text, answers=answers, doc_ids=doc_ids, type=kind, timestamp=asked,
                         meta=meta)


def _select(stream: list[SourceDocument], kept: list[BenchQuestion],
            every: list[BenchQuestion]) -> list[SourceDocument]:
    """The documents the kept questions cite, plus those cited by the twins of kept as-of questions; stream order."""
    cited = {d for q in kept for d in q.doc_ids}
    dated = {q.question for q in kept if q.type == "as_of"}
    cited |= {d for q in every if q.type == "as_of" and q.question in dated for d in q.doc_ids}
    return [d for d in stream if d.external_id in cited]
