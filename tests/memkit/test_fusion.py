"""Fusing a dense and a lexical ranking: reciprocal rank fusion, normalised-score fusion, one list alone."""

from __future__ import annotations

import pytest

from memkit.fusion import FusionConfig, fuse, min_max, rrf, score_fusion

DENSE = [(10, 0.91), (20, 0.90), (30, 0.40)]
LEXICAL = [(30, 12.0), (40, 11.0), (10, 2.0)]


def test_rrf_sums_reciprocal_ranks_and_ignores_scores():
    got = dict(rrf([DENSE, LEXICAL], k=60))
    assert got[10] == pytest.approx(1 / 61 + 1 / 63)
    assert got[30] == pytest.approx(1 / 63 + 1 / 61)
    assert got[20] == pytest.approx(1 / 62) and got[40] == pytest.approx(1 / 62)
    # 10 and 30 tie on score: the tie goes to the better best rank (both 1), then the smaller id
    assert [i for i, _ in rrf([DENSE, LEXICAL], k=60)] == [10, 30, 20, 40]
    # scaling a list's scores changes nothing
    scaled = [(i, s * 1000) for i, s in LEXICAL]
    assert rrf([DENSE, scaled]) == rrf([DENSE, LEXICAL])


def test_rrf_k_and_weights_move_the_order():
    a = [(1, 0.0), (2, 0.0), (3, 0.0)]
    b = [(4, 0.0), (5, 0.0), (2, 0.0)]
    # small k: first places dominate; large k: being in both lists (2, second and third) dominates
    assert [i for i, _ in rrf([a, b], k=0)][:3] == [1, 4, 2]
    assert [i for i, _ in rrf([a, b], k=1000)][:2] == [2, 1]
    # all weight on one list gives back that list's order (items absent from it last, at 0)
    assert [i for i, _ in rrf([a, b], k=60, weights=[1.0, 0.0])] == [1, 2, 3, 4, 5]
    assert rrf([a, b], limit=2) == rrf([a, b])[:2] and rrf([a, b], limit=0) == []
    with pytest.raises(ValueError):
        rrf([a, b], weights=[1.0])
    with pytest.raises(ValueError):
        rrf([a, b], k=-1)


def test_an_id_repeated_in_one_list_counts_once():
    assert dict(rrf([[(1, 0.0), (1, 0.0)]], k=0)) == {1: 1.0}
    assert dict(score_fusion([[(1, 5.0), (2, 1.0), (1, 0.0)]])) == {1: 1.0, 2: 0.0}


def test_min_max_maps_each_list_onto_0_1():
    assert min_max([(1, 10.0), (2, 5.0), (3, 0.0)]) == [(1, 1.0), (2, 0.5), (3, 0.0)]
    assert min_max([(1, -3.0), (2, -3.0)]) == [(1, 1.0), (2, 1.0)]      # all equal: all as good as the best
    assert min_max([]) == []


def test_score_fusion_weighs_normalised_scores():
    # dense normalised: 10 -> 1, 20 -> 0.98, 30 -> 0; lexical: 30 -> 1, 40 -> 0.9, 10 -> 0
    got = dict(score_fusion([DENSE, LEXICAL], weights=[0.5, 0.5]))
    assert got[10] == pytest.approx(0.5)
    assert got[20] == pytest.approx(0.5 * (0.5 / 0.51))
    assert got[30] == pytest.approx(0.5)
    assert got[40] == pytest.approx(0.45)
    # the lexical list dominates when weighted so, the dense one when weighted the other way
    assert score_fusion([DENSE, LEXICAL], weights=[0.1, 0.9])[0][0] == 30
    assert score_fusion([DENSE, LEXICAL], weights=[0.9, 0.1])[0][0] == 10
    ranked = score_fusion([DENSE, LEXICAL])
    assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)


def test_fuse_follows_its_config():
    assert fuse(DENSE, LEXICAL, FusionConfig("dense")) == [(10, 0.91), (20, 0.90), (30, 0.40)]
    assert fuse(DENSE, LEXICAL, FusionConfig("lexical"), limit=2) == [(30, 12.0), (40, 11.0)]
    assert [i for i, _ in fuse(DENSE, LEXICAL, FusionConfig("rrf", rrf_k=60))] == [10, 30, 20, 40]
    assert fuse(DENSE, LEXICAL, FusionConfig("score", dense_weight=0.9))[0][0] == 10
    assert fuse(DENSE, LEXICAL, FusionConfig("score", dense_weight=0.1))[0][0] == 30
    assert FusionConfig() == FusionConfig("score", rrf_k=60.0, dense_weight=0.5)     # the measured default
    assert fuse(DENSE, LEXICAL) == fuse(DENSE, LEXICAL, FusionConfig("score"))
    assert fuse([], [], FusionConfig("rrf")) == [] and fuse(DENSE, [], FusionConfig("score"))[0][0] == 10
    for bad in (dict(mode="max"), dict(rrf_k=-1.0), dict(dense_weight=1.5), dict(dense_weight=float("nan"))):
        with pytest.raises(ValueError):
            FusionConfig(**bad)
