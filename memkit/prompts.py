"""The text formats the frozen LM reads: one place for the question-answering prompt and its answer.

Owns: how passages, a question and its answer are laid out for the LM, in one of two formats: ``plain``
(memkit's own: passages, "Question: ...", "Answer:", the answer on the same line) and ``chat`` (the tokenizer's
chat template, for instruct models: the passages and question as the user's turn, the answer as the
assistant's). A trained generator or slot model records the format it was trained with, and its method answers
in that same format (``QAFormat``). Plain prompts end at "Answer:" with no trailing space: with byte-level BPE
a trailing space tokenises differently from training text. Knows nothing of models beyond a tokenizer's chat
template, nor of storage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from memkit.errors import ConfigError

STOP = ["\n"]
PROMPT_FORMATS = ("plain", "chat")


def qa_prompt(question: str, passages: list[str] | None = None) -> str:
    """Passages (if any), a blank line between each, then the question and "Answer:"."""
    question = " ".join(question.split())
    head = "".join(p.strip() + "\n\n" for p in passages or [] if p.strip())
    return f"{head}Question: {question}\nAnswer:"


def user_turn(question: str, passages: list[str] | None = None) -> str:
    """The user's message of the chat format: the passages, then the question."""
    question = " ".join(question.split())
    head = "".join(p.strip() + "\n\n" for p in passages or [] if p.strip())
    return f"{head}{question}"


@dataclass(frozen=True)
class QAFormat:
    """How questions and answers are laid out: ``plain`` or ``chat`` (with the tokenizer whose chat template it
    uses). Texts are without the model's leading BOS: the LM adds its own ``bos_ids``."""

    name: str = "plain"
    tokenizer: Any = None

    @classmethod
    def of(cls, name: str, tokenizer=None) -> QAFormat:
        """The format called ``name`` for ``tokenizer``; ``ConfigError`` naming --prompt-format otherwise."""
        if name not in PROMPT_FORMATS:
            raise ConfigError(f"prompt format {name!r} is not one of {', '.join(PROMPT_FORMATS)} (--prompt-format)")
        if name == "chat" and not getattr(tokenizer, "chat_template", None):
            raise ConfigError("the model's tokenizer has no chat template; use --prompt-format plain")
        return cls(name, tokenizer if name == "chat" else None)

    # ---- the chat template, rendered ---------------------------------------------------------------------
    def _render(self, messages: list[dict], open_turn: bool) -> str:
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=open_turn)
        bos = self.tokenizer.bos_token
        return text[len(bos):] if bos and text.startswith(bos) else text

    def _conversation(self, qas: list[tuple[str, str]], passages: list[str] | None) -> list[dict]:
        messages = []
        for i, (question, answer) in enumerate(qas):
            messages.append({"role": "user", "content": user_turn(question, passages if i == 0 else None)})
            messages.append({"role": "assistant", "content": answer})
        return messages

    # ---- what the methods and the training recipes ask for -----------------------------------------------
    def prompt(self, question: str, passages: list[str] | None = None) -> str:
        """The text whose continuation is the answer."""
        if self.name == "plain":
            return qa_prompt(question, passages)
        return self._render([{"role": "user", "content": user_turn(question, passages)}], open_turn=True)

    def turns(self, qas: list[tuple[str, str]], passages: list[str] | None = None) -> list[tuple[str, str]]:
        """``(text before the answer, the answer as the model writes it)`` for each question of one sequence
        that asks them in turn; joined, they are the whole sequence (a training example)."""
        if self.name == "plain":
            return [(("\n\n" if i else "") + qa_prompt(q, passages if i == 0 else None), " " + a + "\n")
                    for i, (q, a) in enumerate(qas)]
        out, done = [], ""
        for i in range(len(qas)):
            messages = self._conversation(qas[: i + 1], passages)
            asking = self._render(messages[:-1], open_turn=True)
            answered = self._render(messages, open_turn=False)
            if not (asking.startswith(done) and answered.startswith(asking)):
                raise ConfigError("the tokenizer's chat template does not render a conversation turn by turn; use "
                                  "--prompt-format plain")
            out.append((asking[len(done):], answered[len(asking):]))
            done = answered
        return out

    @property
    def stop(self) -> list[str]:
        """Strings that end a generated answer (the end of a turn ends it too, as end-of-sequence)."""
        return STOP
