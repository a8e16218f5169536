"""SQuAD v1.1 / v2.0 as a memory benchmark: every paragraph a document, every question about it a question.

Owns: reading the official SQuAD JSON (``{"version", "data": [{"title", "paragraphs": [{"context", "qas":
[{"id", "question", "answers": [{"text", "answer_start"}], "is_impossible"?}]}]}]}``) into a ``Benchmark``.
Knows nothing of models, methods or storage.

Mapping: paragraph ``j`` of the article titled ``T`` becomes document ``"T/j"``; each answerable question
becomes a question whose gold documents are ``["T/j"]`` and whose answers are the distinct answer texts.
SQuAD v2.0 unanswerable questions (``is_impossible: true``) are skipped by default: the memory benchmark
asks what a document says, and "no answer" scores do not measure that. With ``keep_unanswerable=True``
they are kept with the single gold answer ``""`` and type ``"unanswerable"`` (EM/F1 then reward an empty
prediction, the SQuAD v2.0 convention). Only documents some kept question cites are returned.
"""

from __future__ import annotations

from pathlib import Path

from memkit.datasets.records import BenchQuestion, Benchmark, bench_document
from memkit.documents import SourceDocument
from memkit.datasets.loaders.common import (
    DatasetError, check_count, field, needed_documents, read_json, require_path, take,
)

NAME = "squad"
EXPECTED = ('a SQuAD v1.1/v2.0 JSON file such as dev-v1.1.json: {"data": [{"title", "paragraphs": '
            '[{"context", "qas": [{"id", "question", "answers": [{"text", "answer_start"}]}]}]}]}')


def load(path: str | Path, *, limit: int | None = None, keep_unanswerable: bool = False) -> Benchmark:
    """Read a SQuAD JSON file; ``limit`` keeps the first N questions and the paragraphs they cite."""
    limit = check_count(NAME, "limit", limit)
    path = require_path(NAME, path, EXPECTED)
    root = read_json(NAME, path, EXPECTED)
    articles = root.get("data") if isinstance(root, dict) else None
    if not isinstance(articles, list):
        raise DatasetError(NAME, path, "no top-level 'data' list", expected=EXPECTED)

    ctx = {"dataset": NAME, "path": path, "expected": EXPECTED}
    documents: list[SourceDocument] = []
    questions: list[BenchQuestion] = []
    seen_titles: dict[str, int] = {}
    seen_questions: set[str] = set()
    skipped = 0
    for a, article in enumerate(articles):
        where = f"data[{a}]"
        title = field(article, "title", str, where=where, nonempty=True, **ctx)
        paragraphs = field(article, "paragraphs", list, where=where, **ctx)
        # A file that merges several SQuAD files may repeat a title: later copies get a suffix.
        seen_titles[title] = seen_titles.get(title, 0) + 1
        base = title if seen_titles[title] == 1 else f"{title}~{seen_titles[title]}"
        for p, paragraph in enumerate(paragraphs):
            pwhere = f"{where}.paragraphs[{p}]"
            doc_id = f"{base}/{p}"
            context = field(paragraph, "context", str, where=pwhere, nonempty=True, **ctx)
            documents.append(bench_document(id=doc_id, text=context, source=title,
                                           meta={"title": title, "paragraph": p}))
            for k, qa in enumerate(field(paragraph, "qas", list, where=pwhere, **ctx)):
                question = _question(qa, doc_id, f"{pwhere}.qas[{k}]", keep_unanswerable, ctx)
                if question is None:
                    skipped += 1
                    continue
                if question.id in seen_questions:
                    raise DatasetError(NAME, path, f"question id {question.id!r} appears twice",
                                       where=f"{pwhere}.qas[{k}]", expected="unique question ids")
                seen_questions.add(question.id)
                questions.append(question)

    if not questions:
        raise DatasetError(NAME, path, "no answerable questions in the file", expected=EXPECTED)
    kept = take(questions, limit)
    meta = {"path": str(path), "version": root.get("version"), "skipped_unanswerable": skipped,
            "options": {"limit": limit, "keep_unanswerable": keep_unanswerable}}
    return Benchmark(name=NAME, documents=needed_documents(documents, kept), questions=kept, meta=meta)


def _question(qa, doc_id: str, where: str, keep_unanswerable: bool, ctx: dict) -> BenchQuestion | None:
    qid = field(qa, "id", (str, int), where=where, **ctx)
    text = field(qa, "question", str, where=where, nonempty=True, **ctx)
    impossible = field(qa, "is_impossible", bool, where=where, default=False, **ctx)
    if impossible:
        if not keep_unanswerable:
            return None
        return BenchQuestion(id=str(qid), question=text, answers=[""], doc_ids=[doc_id], type="unanswerable")
    answers: list[str] = []
    starts: list[int] = []
    for n, answer in enumerate(field(qa, "answers", list, where=where, **ctx)):
        awhere = f"{where}.answers[{n}]"
        answer_text = field(answer, "text", str, where=awhere, nonempty=True, **ctx)
        start = field(answer, "answer_start", int, where=awhere, default=None, **ctx)
        if answer_text not in answers:
            answers.append(answer_text)
            starts.append(start)
    if not answers:
        raise DatasetError(ctx["dataset"], ctx["path"], "an answerable question has no answers", where=where,
                           expected='at least one {"text", "answer_start"}, or "is_impossible": true')
    return BenchQuestion(id=str(qid), question=text, answers=answers, doc_ids=[doc_id],
                         meta={"answer_starts": starts})
