"""Search: nearest keys from the vector index, or best word matches from the database's full-text index, joined
with their SQL rows.

Owns: turning index results into ``Hit`` values, best first. The index may hold ids whose rows are gone (a
reader's index that has not caught up) and a kind filter may reject many of the nearest keys, so this asks the
index for more candidates, four times as many each round, until every query has ``k`` hits or the index has no
more to give. Knows nothing of models or blob files.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sqlalchemy.orm import Session

from storage import lexical, queries
from storage.index import VectorIndex
from storage.types import Hit

KIND_OVERFETCH = 4
"""With a kind filter, the first round asks for this many times ``k`` candidates."""


def search_joined(
    index: VectorIndex | None,
    session: Callable[[], Session],
    collection_id: int,
    keys: np.ndarray,
    k: int,
    kinds: set[str] | None,
    with_text: bool = False,
    as_of: str | None = None,
) -> list[list[Hit]]:
    """The ``k`` best hits for each row of ``keys`` ([q, d] float32) among memories SQL holds (of ``kinds``;
    with ``as_of``, an ISO 8601 UTC time as the store keeps them, only of documents timestamped at or before
    it), with their documents' texts if ``with_text``."""
    results: list[list[Hit]] = [[] for _ in range(len(keys))]
    total = 0 if index is None else index.ntotal
    if k <= 0 or total == 0 or (kinds is not None and not kinds):
        return results
    pending = list(range(len(keys)))
    fetch = min(total, k if kinds is None and as_of is None else KIND_OVERFETCH * k)
    while pending:
        scores, ids = index.search(keys[pending], fetch)
        with session() as s:
            rows = queries.hit_rows(s, collection_id, {i for row in ids for i in row.tolist()}, kinds, with_text,
                                   as_of=as_of)
        short = []
        for q, q_scores, q_ids in zip(pending, scores, ids):
            hits = []
            for score, memory_id in zip(q_scores.tolist(), q_ids.tolist()):
                if memory_id in rows and len(hits) < k:
                    hits.append(Hit(memory_id, rows[memory_id][0], score, *rows[memory_id][1:]))
            results[q] = hits
            if len(hits) < k and fetch < total:
                short.append(q)
        pending, fetch = short, min(total, 4 * fetch)
    return results


def search_lexical(
    session: Callable[[], Session],
    collection_id: int,
    texts: list[str],
    k: int,
    kinds: set[str] | None,
    with_text: bool = False,
    as_of: str | None = None,
) -> list[list[Hit]]:
    """``search_joined`` for query texts matched by the database's full-text index (``storage/lexical.py``):
    the ``k`` best hits for each text among memories of ``kinds`` (and with ``as_of``, of documents timestamped
    at or before it), asking for more candidates, four times as many each round, while a filter leaves a query
    short and the index may hold more."""
    results: list[list[Hit]] = [[] for _ in texts]
    if k <= 0 or (kinds is not None and not kinds):
        return results
    pending = list(range(len(texts)))
    fetch = k if kinds is None and as_of is None else KIND_OVERFETCH * k
    while pending:
        with session() as s:
            found = lexical.search_many(s, collection_id, [texts[q] for q in pending], fetch)
            rows = queries.hit_rows(s, collection_id, {i for row in found for i, _ in row}, kinds, with_text,
                                   as_of=as_of)
        short = []
        for q, row in zip(pending, found):
            hits = [Hit(memory_id, rows[memory_id][0], score, *rows[memory_id][1:])
                    for memory_id, score in row if memory_id in rows][:k]
            results[q] = hits
            if len(hits) < k and len(row) == fetch:
                short.append(q)
        pending, fetch = short, 4 * fetch
    return results
