"""SQuAD-style EM/F1, aggregation and percentiles, on cases checked by hand."""

from __future__ import annotations

import pytest

from memkit.datasets.metrics import aggregate, exact_match, f1, normalize_answer, percentile


def test_normalisation_lowercases_strips_punctuation_articles_and_spaces():
    assert normalize_answer("  The Cat's   HAT! ") == "cats hat"
    assert normalize_answer("a\tb\n an  apple") == "b apple"


def test_articles_are_dropped_only_as_words():
    assert exact_match("the Eiffel Tower", "Eiffel Tower") == 1.0
    assert exact_match("An apple", "apple") == 1.0
    assert normalize_answer("theatre another") == "theatre another"


def test_punctuation_does_not_matter():
    assert exact_match("U.S.A.", "USA") == 1.0
    assert exact_match("Denver Broncos.", "Denver Broncos") == 1.0
    assert exact_match("1,000", "1000") == 1.0


def test_partial_overlap_f1():
    # pred {quick, brown, fox} vs gold {quick, fox, jumps}: 2 shared, P = R = 2/3.
    assert f1("the quick brown fox", "quick fox jumps") == pytest.approx(2 / 3)
    # pred {denver, broncos} vs gold {broncos}: P = 1/2, R = 1 -> 2/3.
    assert f1("Denver Broncos", "Broncos") == pytest.approx(2 / 3)
    assert exact_match("Denver Broncos", "Broncos") == 0.0


def test_repeated_tokens_count_once_each_side():
    # Counter intersection: red x1, blue x1 -> 2 shared of 3 each.
    assert f1("red red blue", "red blue blue") == pytest.approx(2 / 3)


def test_no_overlap_is_zero():
    assert f1("Paris", "London") == 0.0


def test_empty_prediction():
    assert exact_match("", "Denver") == 0.0
    assert f1("", "Denver") == 0.0
    # SQuAD v2 convention: empty against empty is a match; "the" normalises to nothing.
    assert f1("", "") == 1.0 and exact_match("", "") == 1.0
    assert f1("the", "") == 1.0
    assert f1("Denver", "") == 0.0


def test_best_over_multiple_golds():
    assert exact_match("Broncos", ["Denver Broncos", "Broncos"]) == 1.0
    # vs "Broncos": 0; vs "Denver Broncos": P = 1, R = 1/2 -> 2/3.
    assert f1("Denver", ["Broncos", "Denver Broncos"]) == pytest.approx(2 / 3)
    assert f1("Denver Broncos", ("Broncos", "Denver Broncos")) == 1.0


def test_unicode_answers():
    assert exact_match("Zürich", "zürich") == 1.0
    assert exact_match("cafe\u0301", "café") == 1.0          # decomposed vs composed é
    assert exact_match("\u201cParis\u201d", "Paris") == 1.0   # curly quotes are punctuation
    assert exact_match("1990\u20141995", "19901995") == 1.0   # an em dash is punctuation
    assert exact_match("東京", "東京") == 1.0
    assert f1("Straße Köln", "köln") == pytest.approx(2 / 3)


def test_no_gold_answers_is_refused():
    with pytest.raises(ValueError, match="gold"):
        f1("x", [])
    with pytest.raises(ValueError, match="gold"):
        exact_match("x", [])


def test_aggregate_overall_and_per_type():
    records = [
        {"em": 1.0, "f1": 1.0, "type": "recent"},
        {"em": 0.0, "f1": 0.5, "type": "recent"},
        {"em": 0.0, "f1": 0.0, "type": "past"},
        {"prediction": "the Broncos", "answers": ["Denver Broncos"], "type": "past"},  # EM 0, F1 2/3
    ]
    result = aggregate(records)
    assert result["count"] == 4
    assert result["em"] == pytest.approx(25.0)
    assert result["f1"] == pytest.approx(100 * (1 + 0.5 + 0 + 2 / 3) / 4)
    assert list(result["by_type"]) == ["past", "recent"]
    assert result["by_type"]["recent"] == pytest.approx({"count": 2, "em": 50.0, "f1": 75.0})
    assert result["by_type"]["past"]["f1"] == pytest.approx(100 * (2 / 3) / 2)


def test_aggregate_accepts_objects_and_defaults_the_type():
    class Row:
        def __init__(self, em, f):
            self.em, self.f1 = em, f

    result = aggregate([Row(1.0, 1.0), Row(0.0, 0.25)])
    assert result["em"] == pytest.approx(50.0) and result["f1"] == pytest.approx(62.5)
    assert list(result["by_type"]) == ["single"]


def test_aggregate_of_nothing_and_of_unscorable_records():
    assert aggregate([]) == {"count": 0, "em": 0.0, "f1": 0.0, "by_type": {}}
    with pytest.raises(ValueError, match="prediction"):
        aggregate([{"type": "x"}])


def test_percentile_interpolates_like_numpy():
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(values, 95) == pytest.approx(3.85)
    assert percentile(values, 0) == 1.0 and percentile(values, 100) == 4.0
    assert percentile([7.0], 95) == 7.0


def test_percentile_refuses_bad_input():
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1.0], 101)
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
