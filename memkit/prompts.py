"""The text formats the frozen LM reads: one place for the question-answering prompt and its answer.

Owns: how passages, a question and its answer are laid out for the LM, in one of three formats: ``plain``
(memkit's own: passages, "Question: ...", "Answer:", the answer on the same line), ``fewshot`` (the plain layout
after a few worked examples written for memkit, for small pretrained models that do not yet know what the
layout asks of them) and ``chat`` (the tokenizer's chat template, for instruct models: the passages and question
as the user's turn, the answer as the assistant's). Answers end at the first line break in every format. A trained generator or slot model records the format it was trained with, and its method answers
in that same format (``QAFormat``). Plain prompts end at "Answer:" with no trailing space: with byte-level BPE
a trailing space tokenises differently from training text. Knows nothing of models beyond a tokenizer's chat
template, nor of storage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from memkit.errors import ConfigError

STOP = ["\n"]
PROMPT_FORMATS = ("plain", "fewshot", "chat")

FEWSHOT_EXAMPLES: tuple[tuple[str, str, str], ...] = (
    ("The reading room of the Orvel Street library reopened on 4 March after eleven months of repairs. The new "
     "shelving was paid for by the Pellam Trust, and the room now seats forty people.",
     "Who paid for the new shelving?", "the Pellam Trust"),
    ("Tamsin Okoro has coached the Rillbank Rowing Club since 2019. Before that she rowed for the club for six "
     "seasons and worked as a ferry pilot in Gadsby.",
     "Where did Tamsin Okoro work as a ferry pilot?", "Gadsby"),
)
"""The worked examples of the ``fewshot`` format: (passage, question, answer), written for memkit about invented
places and people, taken from no benchmark; each answer is a short span of its passage."""


def fewshot_preamble() -> str:
    """The worked examples, in the plain layout, each followed by a blank line."""
    return "".join(f"{qa_prompt(q, [p])} {a}\n\n" for p, q, a in FEWSHOT_EXAMPLES)


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
    """How questions and answers are laid out: ``plain``, ``fewshot`` or ``chat`` (with the tokenizer whose chat
    template it uses). Texts are without the model's leading BOS: the LM adds its own ``bos_ids``."""

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
        if self.name == "fewshot":
            return fewshot_preamble() + qa_prompt(question, passages)
        return self._render([{"role": "user", "content": user_turn(question, passages)}], open_turn=True)

    def turns(self, qas: list[tuple[str, str]], passages: list[str] | None = None) -> list[tuple[str, str]]:
        """``(text before the answer, the answer as the model writes it)`` for each question of one sequence
        that asks them in turn; joined, they are the whole sequence (a training example)."""
        if self.name in ("plain", "fewshot"):
            lead = fewshot_preamble() if self.name == "fewshot" else ""
            return [((("\n\n" if i else lead)) + qa_prompt(q, passages if i == 0 else None), " " + a + "\n")
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
