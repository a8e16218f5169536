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
    total = 0 if index is None else index.ntotal
    if total == 0:
        return [[] for _ in range(len(keys))]

    def candidates(_s: Session, pending: list[int], fetch: int) -> list[list[tuple[int, float]]]:
        scores, ids = index.search(keys[pending], fetch)
        return [list(zip(q_ids.tolist(), q_scores.tolist())) for q_scores, q_ids in zip(scores, ids)]

    return _rounds(candidates, session, collection_id, len(keys), k, kinds, with_text, as_of, total)


def search_lexical(
    session: Callable[[], Session],
    collection_id: int,
    texts: list[str],
    k: int,
    kinds: set[str] | None,
    with_text: bool = False,
    as_of: str | None = None,
) -> list[list[Hit]]:
    """``search_joined`` for query texts matched by the database's full-text index (``storage/lexical.py``)."""
    def candidates(s: Session, pending: list[int], fetch: int) -> list[list[tuple[int, float]]]:
        return lexical.search_many(s, collection_id, [texts[q] for q in pending], fetch)

    return _rounds(candidates, session, collection_id, len(texts), k, kinds, with_text, as_of, None)


def _rounds(candidates, session: Callable[[], Session], collection_id: int, n: int, k: int,
            kinds: set[str] | None, with_text: bool, as_of: str | None, total: int | None) -> list[list[Hit]]:
    """Asks ``candidates(session, query positions, fetch)`` for each pending query's best ``(memory id,
    score)`` pairs, keeps those whose rows SQL holds (and pass the filters), and asks again, four times as deep,
    for the queries left short while more may come: the index holds more than ``fetch`` (``total``), or (no
    ``total``) their list came back full."""
    results: list[list[Hit]] = [[] for _ in range(n)]
    if k <= 0 or (kinds is not None and not kinds):
        return results
    pending = list(range(n))
    fetch = k if kinds is None and as_of is None else KIND_OVERFETCH * k
    if total is not None:
        fetch = min(total, fetch)
    while pending:
        with session() as s:
            found = candidates(s, pending, fetch)
            rows = queries.hit_rows(s, collection_id, {i for row in found for i, _ in row}, kinds, with_text,
                                   as_of=as_of)
        short = []
        for q, row in zip(pending, found):
            results[q] = [Hit(memory_id, rows[memory_id][0], score, *rows[memory_id][1:])
                          for memory_id, score in row if memory_id in rows][:k]
            if len(results[q]) < k and (len(row) == fetch if total is None else fetch < total):
                short.append(q)
        pending, fetch = short, 4 * fetch if total is None else min(total, 4 * fetch)
    return results
