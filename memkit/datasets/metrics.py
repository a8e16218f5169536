"""Scoring answers against gold answers, SQuAD style, and summarising a run.

Owns: answer normalisation, exact match and token-overlap F1 (each the best over every gold answer, 0..1),
``aggregate`` (mean EM/F1 x100 overall and per question type) and ``percentile`` (latency p50/p95).
Knows nothing of models, methods, storage or how a prediction was produced: it compares strings and
averages numbers.

Normalisation follows the SQuAD evaluation script: lowercase, drop punctuation, drop the articles
"a", "an" and "the", collapse whitespace. Two deliberate widenings, both harmless on English SQuAD: text
is first put in Unicode NFC form (so a composed and a decomposed "é" compare equal), and Unicode
punctuation (curly quotes, dashes, guillemets...) is dropped as well as ASCII punctuation.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_ASCII_PUNCT = frozenset(string.punctuation)


def _is_punct(ch: str) -> bool:
    return ch in _ASCII_PUNCT or unicodedata.category(ch).startswith("P")


def normalize_answer(text: str) -> str:
    """Lowercase, strip punctuation, drop articles, collapse whitespace (after Unicode NFC)."""
    text = unicodedata.normalize("NFC", text).lower()
    text = "".join(ch for ch in text if not _is_punct(ch))
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _tokens(text: str) -> list[str]:
    return normalize_answer(text).split()


def _golds(golds: str | Sequence[str]) -> list[str]:
    if isinstance(golds, str):
        return [golds]
    golds = list(golds)
    if not golds:
        raise ValueError("no gold answers to score against (expected at least one string)")
    return golds


def exact_match(pred: str, golds: str | Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold answer, else 0.0."""
    norm = normalize_answer(pred)
    return max(float(norm == normalize_answer(g)) for g in _golds(golds))


def _f1_one(pred_toks: list[str], gold_toks: list[str]) -> float:
    if not pred_toks or not gold_toks:
        # SQuAD v2 convention: an empty answer scores 1 only against an empty gold.
        return float(pred_toks == gold_toks)
    common = Counter(pred_toks) & Counter(gold_toks)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_toks)
    recall = same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def f1(pred: str, golds: str | Sequence[str]) -> float:
    """Token-overlap F1 between prediction and gold (bag of normalised tokens), best over the golds."""
    pred_toks = _tokens(pred)
    return max(_f1_one(pred_toks, _tokens(g)) for g in _golds(golds))


def _get(record: Any, name: str, default: Any = None) -> Any:
    if isinstance(record, Mapping):
        return record.get(name, default)
    return getattr(record, name, default)


def _scores(record: Any) -> tuple[float, float]:
    em, f = _get(record, "em"), _get(record, "f1")
    if em is None or f is None:
        pred, answers = _get(record, "prediction"), _get(record, "answers")
        if pred is None or answers is None:
            raise ValueError("a record needs 'em' and 'f1', or 'prediction' and 'answers' to score")
        em = exact_match(pred, answers) if em is None else em
        f = f1(pred, answers) if f is None else f
    return float(em), float(f)


def _summary(pairs: list[tuple[float, float]]) -> dict:
    if not pairs:
        return {"count": 0, "em": 0.0, "f1": 0.0}
    n = len(pairs)
    return {"count": n, "em": 100.0 * sum(p[0] for p in pairs) / n, "f1": 100.0 * sum(p[1] for p in pairs) / n}


def aggregate(records: Iterable[Any]) -> dict:
    """Mean EM and F1 (x100) over all records and per question ``type``.

    A record is a mapping or an object with ``em`` and ``f1`` (0..1) or else ``prediction`` and
    ``answers`` (scored here), and optionally ``type`` (default "single"). Returns
    ``{"count", "em", "f1", "by_type": {type: {"count", "em", "f1"}}}``; types are sorted by name. An
    empty input gives count 0 and zero scores.
    """
    overall: list[tuple[float, float]] = []
    by_type: dict[str, list[tuple[float, float]]] = {}
    for record in records:
        pair = _scores(record)
        overall.append(pair)
        by_type.setdefault(str(_get(record, "type", "single") or "single"), []).append(pair)
    result = _summary(overall)
    result["by_type"] = {name: _summary(by_type[name]) for name in sorted(by_type)}
    return result


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (numpy's default)."""
    if not 0 <= q <= 100:  # also refuses NaN
        raise ValueError(f"percentile q must be between 0 and 100, got {q}")
    data = sorted(float(v) for v in values)
    if not data:
        raise ValueError("percentile of no values (expected at least one measurement)")
    rank = (len(data) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (rank - low)
