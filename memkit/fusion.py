"""Fusing ranked lists of the same items (memory ids) from several retrievers into one ranking.

Owns: reciprocal rank fusion (``rrf``), normalised-score fusion (``score_fusion``: min-max per list, weighted
sum), and ``fuse``, which applies a ``FusionConfig`` (mode ``rrf`` | ``score`` | ``dense`` | ``lexical``) to a dense
and a lexical list. A list is ``[(id, score), ...]``, best first, higher scores better; every result is the same
shape, best first, ties broken by the best rank an id had in any list, then by id, so a fusion is deterministic.
Knows nothing of storage, models or how the lists were made.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence

Ranked = Sequence[tuple[Hashable, float]]
MODES = ("rrf", "score", "dense", "lexical")


@dataclasses.dataclass(frozen=True)
class FusionConfig:
    """How a dense and a lexical list become one."""

    mode: str = "score"
    """``rrf`` (reciprocal rank fusion), ``score`` (min-max normalised scores, weighted), ``dense`` or ``lexical``
    (that list alone). ``score`` with equal weights is the default: on SQuAD (MiniLM + BM25, top 100 of each) it
    found the gold passage first more often than either list alone and than RRF at any k tried
    (docs/benchmarks.md, "Retrieval on real text")."""
    rrf_k: float = 60.0
    """RRF's constant: an item at rank r (1-based) of a list earns weight / (rrf_k + r)."""
    dense_weight: float = 0.5
    """The dense list's weight (the lexical list's is 1 - dense_weight), in ``rrf`` and ``score``."""

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"fusion mode {self.mode!r} is not one of {', '.join(MODES)}")
        if not self.rrf_k >= 0:
            raise ValueError(f"rrf_k must be at least 0, not {self.rrf_k}")
        if not 0.0 <= self.dense_weight <= 1.0:
            raise ValueError(f"dense_weight must be in [0, 1], not {self.dense_weight}")


def _check(lists: Sequence[Ranked], weights: Sequence[float] | None) -> list[float]:
    if weights is None:
        return [1.0] * len(lists)
    if len(weights) != len(lists):
        raise ValueError(f"{len(weights)} weights for {len(lists)} lists")
    if any(not w >= 0 for w in weights):
        raise ValueError(f"weights must be at least 0: {list(weights)}")
    return [float(w) for w in weights]


def _ranked(totals: dict, best_rank: dict, limit: int | None) -> list[tuple[Hashable, float]]:
    order = sorted(totals, key=lambda i: (-totals[i], best_rank[i], _id_key(i)))
    if limit is not None:
        order = order[:max(0, limit)]
    return [(i, totals[i]) for i in order]


def _id_key(i: Hashable):
    return (0, i, "") if isinstance(i, (int, float)) else (1, 0, str(i))


def rrf(lists: Sequence[Ranked], *, k: float = 60.0, weights: Sequence[float] | None = None,
        limit: int | None = None) -> list[tuple[Hashable, float]]:
    """Reciprocal rank fusion: each id scores ``sum(weight / (k + rank))`` over the lists it is in (rank 1-based;
    only its first place in a list counts). Scores themselves are ignored, only the order of each list."""
    if not k >= 0:
        raise ValueError(f"k must be at least 0, not {k}")
    weights = _check(lists, weights)
    totals: dict = {}
    best: dict = {}
    for w, ranked in zip(weights, lists):
        for rank, (item, _) in enumerate(_unique(ranked), start=1):
            totals[item] = totals.get(item, 0.0) + w / (k + rank)
            best[item] = min(best.get(item, rank), rank)
    return _ranked(totals, best, limit)


def _unique(ranked: Ranked) -> list[tuple[Hashable, float]]:
    """Each id once, at its first place."""
    out, seen = [], set()
    for item, s in ranked:
        if item not in seen:
            seen.add(item)
            out.append((item, float(s)))
    return out


def min_max(ranked: Ranked) -> list[tuple[Hashable, float]]:
    """Scores mapped onto [0, 1] by the list's own minimum and maximum (each id once, at its first place); a
    list whose scores are all equal maps to 1 (every item is as good as its best)."""
    ranked = _unique(ranked)
    if not ranked:
        return []
    scores = [float(s) for _, s in ranked]
    lo, hi = min(scores), max(scores)
    if hi - lo <= 0:
        return [(item, 1.0) for item, _ in ranked]
    return [(item, (s - lo) / (hi - lo)) for (item, _), s in zip(ranked, scores)]


def score_fusion(lists: Sequence[Ranked], *, weights: Sequence[float] | None = None,
                 limit: int | None = None) -> list[tuple[Hashable, float]]:
    """Normalised-score fusion: each list min-max normalised (``min_max``), then ``sum(weight * score)`` per id;
    an id missing from a list gets 0 from it (as much as that list's worst)."""
    weights = _check(lists, weights)
    totals: dict = {}
    best: dict = {}
    for w, ranked in zip(weights, lists):
        for rank, (item, s) in enumerate(min_max(ranked), start=1):
            totals[item] = totals.get(item, 0.0) + w * s
            best[item] = min(best.get(item, rank), rank)
    return _ranked(totals, best, limit)


def _alone(ranked: Ranked, limit: int | None) -> list[tuple[Hashable, float]]:
    """One list as it is (its order, its scores), each id once, cut to ``limit``."""
    out = _unique(ranked)
    return out if limit is None else out[:max(0, limit)]


def fuse(dense: Ranked, lexical: Ranked, config: FusionConfig = FusionConfig(),
         limit: int | None = None) -> list[tuple[Hashable, float]]:
    """One ranking from a dense and a lexical list, as ``config`` says."""
    if config.mode in ("dense", "lexical"):
        return _alone(dense if config.mode == "dense" else lexical, limit)
    weights = (config.dense_weight, 1.0 - config.dense_weight)
    if config.mode == "rrf":
        return rrf([dense, lexical], k=config.rrf_k, weights=weights, limit=limit)
    return score_fusion([dense, lexical], weights=weights, limit=limit)
