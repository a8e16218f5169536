"""StreamingQA as a memory benchmark: a time-ordered stream of news documents and dated questions about it.

Owns: reading the StreamingQA question JSONL (as released: ``qa_id``, ``question``, ``answers``,
``answers_additional``, ``question_ts``, ``evidence_ts``, ``evidence_id``, ``recent_or_past``,
``written_or_generated``, plain or gzipped) together with a documents JSONL the user prepares from the
WMT news crawl (``id`` = the WMT sorting key that ``evidence_id`` names, ``text``, ``timestamp`` = seconds
since 1970 or ISO 8601). Knows nothing of models, methods or storage.

Mapping: documents form the stream, ordered by timestamp (file order breaks ties); each question cites its
``evidence_id`` document, is asked at ``question_ts`` and has type ``recent`` or ``past`` (its
``recent_or_past``) so scores split the way the paper reports them. ``answers`` are the gold answers;
``answers_additional`` (the human-baseline reference) is kept in ``meta`` only. A question whose evidence
document is absent from the documents file is skipped and counted (``strict=True`` refuses instead).
``limit`` keeps the first N questions; the stream then holds every document they cite plus, in time order,
as many others as ``max_docs`` allows (the whole stream when ``max_docs`` is None).
"""

from __future__ import annotations

from pathlib import Path

from memkit.datasets.records import BenchQuestion, Benchmark, bench_document
from memkit.documents import SourceDocument
from memkit.datasets.loaders.common import (
    DatasetError, check_count, field, iso_timestamp, iter_jsonl, pick_file, require_path, string_list,
    take, time_key,
)

NAME = "streamingqa"
EXPECTED = ("StreamingQA questions JSONL (qa_id, question, answers, question_ts, evidence_id, evidence_ts) "
            "plus documents=PATH to a JSONL of {id, text, timestamp}, or a directory holding both, the "
            "documents as documents.jsonl")
QUESTIONS_EXPECTED = ("one JSON object per line with qa_id (str), question (str), answers (list of str), "
                      "question_ts (int seconds), evidence_id (str)")
DOCUMENTS_EXPECTED = "one JSON object per line with id (str), text (str), timestamp (int seconds or ISO 8601)"
_DOC_NAMES = ("documents.jsonl", "documents.jsonl.gz")


def load(path: str | Path, *, documents: str | Path | None = None, limit: int | None = None,
         max_docs: int | None = None, split: str = "eval", strict: bool = False) -> Benchmark:
    """Read questions (a file, or the one in a directory chosen by ``split``) and the document stream."""
    limit = check_count(NAME, "limit", limit)
    max_docs = check_count(NAME, "max_docs", max_docs)
    questions_path, documents_path = _resolve(require_path(NAME, path, EXPECTED), documents, split)

    stream = _read_documents(documents_path)
    known = {d.external_id for d in stream}
    questions: list[BenchQuestion] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for where, obj in iter_jsonl(NAME, questions_path, QUESTIONS_EXPECTED):
        question = _question(obj, questions_path, where)
        if question.id in seen:
            raise DatasetError(NAME, questions_path, f"qa_id {question.id!r} appears twice", where=where,
                               expected="unique qa_id values")
        seen.add(question.id)
        if question.doc_ids[0] not in known:
            if strict:
                raise DatasetError(NAME, documents_path, f"no document with id {question.doc_ids[0]!r}, the "
                                   f"evidence of question {question.id!r}", expected=DOCUMENTS_EXPECTED)
            skipped.append(question.id)
            continue
        questions.append(question)
    if not questions:
        problem = (f"none of the {len(skipped)} questions has its evidence document in {documents_path}"
                   if skipped else "no questions in the file")
        raise DatasetError(NAME, questions_path, problem, expected=QUESTIONS_EXPECTED)

    kept = take(questions, limit)
    meta = {"path": str(questions_path), "documents_path": str(documents_path), "stream": True,
            "skipped_questions": len(skipped), "stream_size": len(stream),
            "options": {"limit": limit, "max_docs": max_docs, "split": split, "strict": strict}}
    return Benchmark(name=NAME, documents=_select(stream, kept, max_docs), questions=kept, meta=meta)


def _resolve(path: Path, documents: str | Path | None, split: str) -> tuple[Path, Path]:
    if path.is_dir():
        docs = Path(documents).expanduser() if documents is not None else next(
            (path / n for n in _DOC_NAMES if (path / n).is_file()), None)
        if docs is None:
            raise DatasetError(NAME, path, "no documents.jsonl in the directory", expected=EXPECTED)
        candidates = sorted(p for p in path.iterdir() if p.is_file() and p.name not in _DOC_NAMES
                            and p.name.endswith((".jsonl", ".jsonl.gz")) and p.resolve() != docs.resolve())
        questions = pick_file(NAME, path, candidates, split, "one questions JSONL, or split=NAME to pick one")
    else:
        if documents is None:
            raise DatasetError(NAME, path, "no documents given for the questions file", expected=EXPECTED)
        questions, docs = path, Path(documents).expanduser()
    return questions, require_path(NAME, docs, DOCUMENTS_EXPECTED)


def _read_documents(path: Path) -> list[SourceDocument]:
    ctx = {"dataset": NAME, "path": path, "expected": DOCUMENTS_EXPECTED}
    rows: list[tuple[object, int, SourceDocument]] = []
    seen: set[str] = set()
    for where, obj in iter_jsonl(NAME, path, DOCUMENTS_EXPECTED):
        doc_id = str(field(obj, "id", (str, int), where=where, **ctx))
        text = field(obj, "text", str, where=where, nonempty=True, **ctx)
        stamp = field(obj, "timestamp", (str, int, float), where=where, **ctx)
        try:
            moment = time_key(stamp)
        except (ValueError, OverflowError, OSError):
            raise DatasetError(NAME, path, f"timestamp {stamp!r} is not a time", where=where,
                               expected=DOCUMENTS_EXPECTED) from None
        if doc_id in seen:
            raise DatasetError(NAME, path, f"document id {doc_id!r} appears twice", where=where,
                               expected="unique document ids")
        seen.add(doc_id)
        meta = {k: v for k, v in obj.items() if k not in ("id", "text", "timestamp")}
        doc = bench_document(id=doc_id, text=text, timestamp=iso_timestamp(stamp), source=doc_id, meta=meta)
        rows.append((moment, len(rows), doc))
    if not rows:
        raise DatasetError(NAME, path, "no documents in the file", expected=DOCUMENTS_EXPECTED)
    rows.sort(key=lambda r: (r[0], r[1]))
    return [r[2] for r in rows]


def _question(obj: dict, path: Path, where: str) -> BenchQuestion:
    ctx = {"dataset": NAME, "path": path, "where": where, "expected": QUESTIONS_EXPECTED}
    qid = str(field(obj, "qa_id", (str, int), **ctx))
    text = field(obj, "question", str, nonempty=True, **ctx)
    answers = [a for a in string_list(field(obj, "answers", (list, str), **ctx), "answers", **ctx) if a.strip()]
    if not answers:
        raise DatasetError(NAME, path, "field 'answers' holds no non-empty answer", where=where,
                           expected=QUESTIONS_EXPECTED)
    evidence = str(field(obj, "evidence_id", (str, int), nonempty=True, **ctx))
    asked = field(obj, "question_ts", (int, float, str), **ctx)
    evidence_ts = field(obj, "evidence_ts", (int, float, str), default=None, **ctx)
    for name, value in (("question_ts", asked), ("evidence_ts", evidence_ts)):
        if value is None:
            continue
        try:
            time_key(value)
        except (ValueError, OverflowError, OSError):
            raise DatasetError(NAME, path, f"{name} {value!r} is not a time", where=where,
                               expected=QUESTIONS_EXPECTED) from None
    additional = field(obj, "answers_additional", (list, str), default=[], **ctx)
    meta = {
        "evidence_ts": None if evidence_ts is None else iso_timestamp(evidence_ts),
        "answers_additional": [a for a in (additional if isinstance(additional, list) else [additional])
                               if isinstance(a, str) and a.strip()],
        "written_or_generated": obj.get("written_or_generated"),
    }
    kind = obj.get("recent_or_past")
    return BenchQuestion(id=qid, question=text, answers=answers, doc_ids=[evidence],
                         type=kind if isinstance(kind, str) and kind else "single",
                         timestamp=iso_timestamp(asked), meta=meta)


def _select(stream: list[SourceDocument], questions: list[BenchQuestion], max_docs: int | None) -> list[SourceDocument]:
    """Every cited document, then others in stream order up to ``max_docs`` in all; stream order kept."""
    cited = {doc_id for q in questions for doc_id in q.doc_ids}
    room = len(stream) if max_docs is None else max(max_docs - len(cited), 0)
    keep: list[SourceDocument] = []
    for doc in stream:
        if doc.external_id in cited:
            keep.append(doc)
        elif room > 0:
            keep.append(doc)
            room -= 1
    return keep
