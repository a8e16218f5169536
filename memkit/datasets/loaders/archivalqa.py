"""ArchivalQA as a memory benchmark: New York Times paragraphs as documents, generated questions about them.

Owns: reading the ArchivalQA split CSVs (``ArchivalQA_train.csv`` / ``_val.csv`` / ``_test.csv``, or a
sub-dataset CSV with the same columns) into a ``Benchmark``. Columns read: ``question``, ``answer``,
``para_id`` and the paragraph text (the first present of ``para_text``, ``paragraph``, ``para``,
``context``, or the column named by ``text_column``); ``id`` when present (else the file name and row);
``org_answer``, ``answer_start``, ``trans_que``, ``trans_ans``, ``source`` and a date column (``pub_date``,
``date`` or ``timestamp``) are kept when present. Knows nothing of models, methods or storage.

Mapping: each distinct ``para_id`` becomes one document (the first row's text wins; ``para_id`` is
``<NYT article id>_<paragraph index>``, so the article id goes to ``meta["article"]``); each row becomes a
question whose gold document is its paragraph and whose gold answer is ``answer`` (the temporally resolved
answer; ``org_answer``, the span as written in the paragraph, is kept in ``meta``). Where the question CSV
carries no paragraph text, ``paragraphs=PATH`` names a CSV of ``para_id`` plus a text column to join.
"""

from __future__ import annotations

from pathlib import Path

from memkit.datasets.records import BenchQuestion, Benchmark, bench_document
from memkit.documents import SourceDocument
from memkit.datasets.loaders.common import (
    DatasetError, check_count, iso_timestamp, needed_documents, pick_file, read_csv, require_path, take,
)

NAME = "archivalqa"
TEXT_COLUMNS = ("para_text", "paragraph", "para", "context")
DATE_COLUMNS = ("pub_date", "date", "timestamp")
KEPT_COLUMNS = ("org_answer", "answer_start", "trans_que", "trans_ans", "source")
EXPECTED = ("an ArchivalQA CSV (e.g. ArchivalQA_test.csv) with columns question, answer, para_id and the "
            "paragraph text (para_text, paragraph, para or context), or a directory of split CSVs")


def load(path: str | Path, *, limit: int | None = None, split: str = "test", text_column: str | None = None,
         paragraphs: str | Path | None = None) -> Benchmark:
    """Read one split CSV (a file, or ``*_<split>.csv`` in a directory); ``limit`` keeps the first N rows."""
    limit = check_count(NAME, "limit", limit)
    path = require_path(NAME, path, EXPECTED)
    if path.is_dir():
        candidates = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith((".csv", ".csv.gz")))
        by_split = [p for p in candidates if p.name.split(".")[0].lower().endswith(f"_{split}".lower())]
        path = pick_file(NAME, path, by_split or candidates, None if by_split else split,
                         f"a CSV whose name ends in _{split}.csv (split=train, val or test)")

    joined = _paragraph_table(paragraphs, text_column) if paragraphs is not None else None
    header, rows = read_csv(NAME, path, ("question", "answer", "para_id"), EXPECTED)
    text_col = None if joined is not None else _text_column(header, text_column, path)
    date_col = next((c for c in DATE_COLUMNS if c in header), None)

    documents: dict[str, SourceDocument] = {}
    questions: list[BenchQuestion] = []
    seen: set[str] = set()
    for where, row in rows:
        question, answer, para_id = (_cell(row, c) for c in ("question", "answer", "para_id"))
        for name, value in (("question", question), ("answer", answer), ("para_id", para_id)):
            if not value:
                raise DatasetError(NAME, path, f"empty {name!r}", where=where, expected=EXPECTED)
        if para_id not in documents:
            documents[para_id] = _document(para_id, row, text_col, date_col, joined, path, where)
        qid = _cell(row, "id") or f"{path.name.split('.')[0]}-{where.split()[-1]}"
        if qid in seen:
            raise DatasetError(NAME, path, f"question id {qid!r} appears twice", where=where,
                               expected="unique values in the id column")
        seen.add(qid)
        meta = {c: row[c] for c in KEPT_COLUMNS if c in row and row[c] is not None}
        questions.append(BenchQuestion(id=qid, question=question, answers=[answer], doc_ids=[para_id],
                                       meta=meta))
    if not questions:
        raise DatasetError(NAME, path, "no rows below the header", expected=EXPECTED)

    kept = take(questions, limit)
    meta = {"path": str(path), "options": {"limit": limit, "split": split, "text_column": text_column,
                                           "paragraphs": None if paragraphs is None else str(paragraphs)}}
    return Benchmark(name=NAME, documents=needed_documents(list(documents.values()), kept), questions=kept,
                     meta=meta)


def _cell(row: dict, column: str) -> str:
    value = row.get(column)
    return value.strip() if isinstance(value, str) else ""


def _text_column(header: list[str], wanted: str | None, path: Path) -> str:
    if wanted is not None:
        if wanted not in header:
            raise DatasetError(NAME, path, f"no column {wanted!r} (text_column) in the header",
                               expected=f"one of: {', '.join(header)}")
        return wanted
    found = next((c for c in TEXT_COLUMNS if c in header), None)
    if found is None:
        raise DatasetError(NAME, path, "no paragraph text column in the header",
                           expected=f"one of {', '.join(TEXT_COLUMNS)}, text_column=NAME, or paragraphs=PATH "
                                    "to a CSV of para_id plus text")
    return found


def _document(para_id: str, row: dict, text_col: str | None, date_col: str | None,
              joined: dict[str, str] | None, path: Path, where: str) -> SourceDocument:
    if joined is not None:
        text = joined.get(para_id, "")
        if not text:
            raise DatasetError(NAME, path, f"para_id {para_id!r} has no text in the paragraphs file",
                               where=where, expected="every para_id present in paragraphs=PATH")
    else:
        text = _cell(row, text_col)
        if not text:
            raise DatasetError(NAME, path, f"empty paragraph text in column {text_col!r}", where=where,
                               expected=EXPECTED)
    article = para_id.rsplit("_", 1)[0] if "_" in para_id else para_id
    stamp = _cell(row, date_col) if date_col else ""
    try:
        stamp = iso_timestamp(stamp) if stamp else None
    except (ValueError, OverflowError, OSError):
        pass  # an unparseable date is kept as written
    return bench_document(id=para_id, text=text, timestamp=stamp, source=f"nyt:{article}",
                         meta={"article": article})


def _paragraph_table(paragraphs: str | Path, text_column: str | None) -> dict[str, str]:
    expected = "a CSV of para_id plus a paragraph text column (para_text, paragraph, para or context)"
    table_path = require_path(NAME, paragraphs, expected)
    header, rows = read_csv(NAME, table_path, ("para_id",), expected)
    column = _text_column(header, text_column, table_path)
    table: dict[str, str] = {}
    for _, row in rows:
        para_id = _cell(row, "para_id")
        if para_id and para_id not in table:
            table[para_id] = _cell(row, column)
    return table
