"""Cutting a document into token windows with their character spans.

Owns: the split of a text into overlapping windows of at most N tokens of a given tokenizer, each window a
character span of the original text, so nothing is dropped and every chunk can be shown as its source. A long
text is tokenized a segment at a time (cut just before a line break, else a space, so the whitespace begins the
next segment as it begins the next token) and only the token offsets are kept, as a compact array: tokenizing
megabytes at once costs the tokenizer's Python objects hundreds of bytes a token.
Knows nothing of models beyond a Hugging Face fast tokenizer, nor of storage.
"""

from __future__ import annotations

import numpy as np

SEGMENT_CHARS = 1 << 16
"""Characters tokenized at a time; a text this long or shorter is tokenized whole, exactly as one call would."""


def _segments(text: str, size: int):
    """``(start, end)`` pieces of ``text`` of at most ``size`` characters, each cut just before the last line
    break (else space) of its second half when there is one. Byte-level BPE pre-tokenizers start a token at
    such whitespace, so the pieces tokenize as the whole text does; a piece with no whitespace is cut at its
    size, splitting at most one token."""
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            cut = text.rfind("\n", start + size // 2, end)
            if cut < 0:
                cut = text.rfind(" ", start + size // 2, end)
            if cut > start:
                end = cut
        yield start, end
        start = end


def token_offsets(tokenizer, text: str, segment_chars: int = SEGMENT_CHARS) -> np.ndarray:
    """``[n, 2]`` int64 character offsets of the text's tokens (empty tokens dropped), a segment at a time."""
    parts = []
    for start, end in _segments(text, segment_chars):
        # verbose=False: a document longer than the model's context is tokenized on purpose, to be cut here;
        # without it transformers logs "Token indices sequence length is longer than ..." for a long document.
        enc = tokenizer(text[start:end], return_offsets_mapping=True, add_special_tokens=False, verbose=False)
        offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
        parts.append(offsets[offsets[:, 1] > offsets[:, 0]] + start)
    return np.concatenate(parts) if parts else np.empty((0, 2), np.int64)


def token_spans(tokenizer, text: str, size: int, overlap: int = 0, *,
                segment_chars: int = SEGMENT_CHARS) -> list[tuple[int, int]]:
    """Character spans of consecutive windows of ``size`` tokens, each overlapping the last by ``overlap``.

    The spans together cover the whole text (leading and trailing whitespace aside).
    """
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"need size >= 1 and 0 <= overlap < size, got size={size}, overlap={overlap}")
    offsets = token_offsets(tokenizer, text, segment_chars)
    n = len(offsets)
    if n == 0:
        return [(0, len(text))] if text.strip() else []
    step = size - overlap
    starts = range(0, max(n - overlap, 1), step) if n > size else range(1)
    spans = []
    for start in starts:
        last = min(start + size, n) - 1
        spans.append((int(offsets[start, 0]), int(offsets[last, 1])))
        if start + size >= n:
            break
    return spans
