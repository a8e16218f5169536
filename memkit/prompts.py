"""The text formats the frozen LM reads: one place for the question-answering prompt.

Owns: how passages and a question are laid out for the LM. Every method and the world LM's training recipe
use these functions, so the format is the same at training and at answering time. Prompts end at "Answer:"
with no trailing space: with byte-level BPE a trailing space tokenises differently from training text.
Knows nothing of models or storage.
"""

from __future__ import annotations

STOP = ["\n"]


def qa_prompt(question: str, passages: list[str] | None = None) -> str:
    """Passages (if any), a blank line between each, then the question and "Answer:"."""
    question = " ".join(question.split())
    head = "".join(p.strip() + "\n\n" for p in passages or [] if p.strip())
    return f"{head}Question: {question}\nAnswer:"
