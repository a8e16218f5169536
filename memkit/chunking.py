"""Cutting a document into token windows with their character spans.

Owns: the split of a text into overlapping windows of at most N tokens of a given tokenizer, each window a
character span of the original text, so nothing is dropped and every chunk can be shown as its source.
Knows nothing of models beyond a Hugging Face fast tokenizer, nor of storage.
"""

from __future__ import annotations


def token_spans(tokenizer, text: str, size: int, overlap: int = 0) -> list[tuple[int, int]]:
    """Character spans of consecutive windows of ``size`` tokens, each overlapping the last by ``overlap``.

    The spans together cover the whole text (leading and trailing whitespace aside).
    """
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"need size >= 1 and 0 <= overlap < size, got size={size}, overlap={overlap}")
    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    offsets = [(a, b) for a, b in enc["offset_mapping"] if b > a]
    if not offsets:
        return [(0, len(text))] if text.strip() else []
    spans = []
    step = size - overlap
    start = 0
    while True:
        window = offsets[start:start + size]
        spans.append((window[0][0], window[-1][1]))
        if start + size >= len(offsets):
            break
        start += step
    return spans
