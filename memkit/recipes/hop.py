"""The recipe that fits a hop model (``memkit.hops``) for one text embedder: banks made from benchmarks (their
documents keyed as a store keys them, their questions and sentences as the engine queries), the model fitted,
and its recall measured on other banks.

Owns: ``bank_of`` (a ``Benchmark`` as a ``HopBank``), ``second_hop_recall`` (how often a question's missed
document is found by the second hop at rank 1 and 5, and how often the gate opens, per question type), ``run``
(fit on named benchmarks, measure on others, save: what ``memkit train hop`` and the hop bench call). Knows no
front door and no storage: the banks are searched exactly, as a flat index does.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from memkit.errors import ConfigError
from memkit.hops import HopBank, HopConfig, HopModel, exact_search, fit_hop_model, sentences


def _weigh(embedder, keys: np.ndarray, doc_keys: np.ndarray) -> np.ndarray:
    """``keys`` weighed as the engine weighs queries against a store holding ``doc_keys``."""
    counts = (doc_keys != 0).sum(0).astype(np.int64)
    return embedder.weigh_queries(keys, lambda: (counts, len(doc_keys)))


def bank_of(bench, embedder) -> tuple[HopBank, list[str]]:
    """``bench``'s documents keyed by ``embedder`` (as stored), each document's sentences and every question
    keyed as queries (weighed by the bank's key frequencies when the embedder weighs queries), the gold
    documents as rows; and the questions' types."""
    texts = [d.text for d in bench.documents]
    row = {d.external_id: i for i, d in enumerate(bench.documents)}
    doc_keys = np.asarray(embedder.embed(texts), dtype=np.float32)
    q_keys = _weigh(embedder, np.asarray(embedder.embed([q.question for q in bench.questions]), np.float32), doc_keys)
    per_doc = [sentences(t) for t in texts]
    flat = np.asarray(embedder.embed([s for ss in per_doc for s in ss]), dtype=np.float32)
    flat = _weigh(embedder, flat, doc_keys)
    sentence_keys, start = [], 0
    for ss in per_doc:
        sentence_keys.append(flat[start:start + len(ss)])
        start += len(ss)
    gold = [[row[i] for i in q.doc_ids] for q in bench.questions]
    return HopBank(doc_keys, sentence_keys, q_keys, gold), [q.type for q in bench.questions]


def second_hop_recall(model: HopModel, bank: HopBank, types: list[str], *, first_k: int = 4) -> dict:
    """Per question type and over all: how many questions; how often the first hop's ``first_k`` miss a gold
    document; how often the gate opens; and, for questions whose first hop finds a gold document first and misses
    another, how often the second hop (ungated, and gated) finds the missed one at rank 1 and within 5 (of the
    documents the first hop did not find)."""
    search = exact_search(bank.doc_keys)
    first_rows = search(bank.question_keys, first_k)
    opens = model.fires(bank.question_keys)
    stats: dict[str, Counter] = {}
    for i, (row, gold, kind) in enumerate(zip(first_rows, bank.gold, types)):
        found = [d for d, _ in row]
        missed = [g for g in gold if g not in found]
        for key in (kind, "all"):
            c = stats.setdefault(key, Counter())
            c["questions"] += 1
            c["first_hop_misses"] += bool(missed)
            c["gate_opens"] += bool(opens[i])
        if not missed or found[0] not in gold:
            continue
        rows = search(model.queries(bank.sentence_keys[found[0]], bank.question_keys[i]), first_k + 5)
        best = model.bridge(rows, set(found))
        position = next((k for k, (d, _) in enumerate(best) if d == missed[0]), None)
        for key in (kind, "all"):
            c = stats[key]
            c["hop_targets"] += 1
            c["recall_at_1"] += position == 0
            c["recall_at_5"] += position is not None and position < 5
            c["gated_recall_at_1"] += position == 0 and bool(opens[i])
    out = {}
    for key, c in stats.items():
        n, t = c["questions"], max(1, c["hop_targets"])
        out[key] = {"questions": n, "first_hop_misses": round(100 * c["first_hop_misses"] / n, 1),
                    "gate_opens": round(100 * c["gate_opens"] / n, 1), "hop_targets": c["hop_targets"],
                    "second_document_recall_at_1": round(100 * c["recall_at_1"] / t, 1),
                    "second_document_recall_at_5": round(100 * c["recall_at_5"] / t, 1),
                    "gated_recall_at_1": round(100 * c["gated_recall_at_1"] / t, 1)}
    return out


def run(fit_on: Sequence[tuple[str, object]], embedder, *, measure_on: Sequence[tuple[str, object]] = (),
        first_k: int = 4, threshold: float = HopConfig.threshold, seed: int = 0, out: Path | None = None,
        log: Callable[[str], None] = lambda _m: None) -> tuple[HopModel, dict]:
    """Fit a hop model among ``embedder``'s keys on the named benchmarks ``fit_on`` (``(name, Benchmark)``; they
    need questions across two documents), measure its second hop on each of ``measure_on``, save it to ``out``
    (with the report) if given; its gate opens above ``threshold``. Returns the model and the report."""
    if not 0 < threshold < 1:
        raise ConfigError(f"--threshold must lie between 0 and 1, not {threshold}")
    if not fit_on:
        raise ConfigError("fitting a hop model needs data: give --data (benchmarks with questions across two "
                          "documents, e.g. world or english:PATH)")
    start = time.time()
    banks = []
    for name, bench in fit_on:
        bank, types = bank_of(bench, embedder)
        log(f"{name}: {len(bench.documents)} documents, {len(types)} questions, "
            f"{sum(len(g) > 1 for g in bank.gold)} across two or more documents")
        banks.append(bank)
    model, fit = fit_hop_model(banks, embedder.describe(), first_k=first_k, seed=seed, log=log)
    model.config.threshold = threshold
    report = {"fit": {**fit.to_dict(), "data": [name for name, _ in fit_on], "first_k": first_k,
                      "threshold": threshold, "seed": seed,
                      "seconds": round(time.time() - start, 1)}, "measured": {}}
    for name, bench in measure_on:
        bank, types = bank_of(bench, embedder)
        report["measured"][name] = second_hop_recall(model, bank, types, first_k=first_k)
        every = report["measured"][name]["all"]
        log(f"{name}: second document at rank 1 {every['second_document_recall_at_1']}%, within 5 "
            f"{every['second_document_recall_at_5']}%; the gate opens for {every['gate_opens']}% of questions")
    if out is not None:
        model.save(out, extra={"fit": report["fit"], "measured": report["measured"]})
    return model, report
