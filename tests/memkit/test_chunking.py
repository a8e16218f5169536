"""Token windows: they cover the whole text, respect the size, and overlap as asked."""

from __future__ import annotations

import pytest

from experiments.tiny_model import build_tokenizer
from memkit.chunking import token_spans


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


TEXT = " ".join(f"Sentence number {i} tells of the harbour and the lighthouse keeper." for i in range(40))


@pytest.mark.parametrize("size,overlap", [(16, 0), (32, 8), (64, 16)])
def test_windows_cover_the_text_within_size(tokenizer, size, overlap):
    spans = token_spans(tokenizer, TEXT, size, overlap)
    assert spans[0][0] == 0 and spans[-1][1] == len(TEXT)
    for (a0, b0), (a1, b1) in zip(spans, spans[1:]):
        assert a1 <= b0, "consecutive windows must touch or overlap"
        assert a1 > a0
    for a, b in spans:
        assert len(tokenizer(TEXT[a:b], add_special_tokens=False)["input_ids"]) <= size + 2
    if overlap:
        assert any(a1 < b0 for (a0, b0), (a1, b1) in zip(spans, spans[1:]))


def test_short_text_is_one_window(tokenizer):
    assert token_spans(tokenizer, "tiny text", 16, 4) == [(0, len("tiny text"))]


def test_bad_sizes_are_refused(tokenizer):
    with pytest.raises(ValueError):
        token_spans(tokenizer, TEXT, 8, 8)


def test_a_long_text_is_cut_in_segments_into_the_same_kind_of_windows(tokenizer):
    from memkit.chunking import token_offsets

    whole = token_offsets(tokenizer, TEXT, segment_chars=len(TEXT))
    pieces = token_offsets(tokenizer, TEXT, segment_chars=300)  # ten segments, each cut before a space
    assert pieces.tolist() == whole.tolist()  # the same tokens as one call on the whole text
    spans = token_spans(tokenizer, TEXT, 32, 8, segment_chars=300)
    assert spans[0][0] == 0 and spans[-1][1] == len(TEXT)
    for (a0, b0), (a1, b1) in zip(spans, spans[1:]):
        assert a0 < a1 <= b0
    assert abs(len(spans) - len(token_spans(tokenizer, TEXT, 32, 8))) <= 1
