"""Shared parts of the methods: validated config dataclasses and answering through the frozen LM.

Owns: ``MethodConfig`` (options parsed from ``KEY=VALUE`` strings or a stored dict, checked in one place,
errors naming the option) and ``TextAnswerer`` (fits passages into the LM's window, generates, builds the
``Answer``). Knows nothing of storage or the CLI.
"""

from __future__ import annotations

import dataclasses
import time
import typing

import numpy as np

from memkit.errors import ConfigError
from memkit.methods.base import Answer, AnswerNotes, Context, Retrieved, Source, Usage, best_first, snippet
from memkit.prompts import PROMPT_FORMATS, QAFormat


@dataclasses.dataclass
class MethodConfig:
    """Base of every method's options. Subclasses add documented fields and extend ``validate``."""

    max_new_tokens: int = 32
    """Longest answer the LM may generate, in tokens."""

    @classmethod
    def from_dict(cls, values: dict | None, method: str) -> "MethodConfig":
        values = dict(values or {})
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown option {unknown[0]!r} for method {method}; "
                              f"known options: {', '.join(sorted(known))}")
        hints = typing.get_type_hints(cls)
        parsed = {name: _coerce(value, hints[name], name) for name, value in values.items()}
        config = cls(**parsed)
        config.validate(method)
        return config

    def validate(self, method: str) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"option max_new_tokens of method {method} must be at least 1")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class TextFormatConfig(MethodConfig):
    """Options of a method that prompts the LM itself (no trained generator or slot model to say how)."""

    prompt_format: str = "auto"
    """How the question (and any passages) is laid out for the LM: plain, fewshot (plain after two worked
    examples; small pretrained models read best with it) or chat (the tokenizer's chat template); auto: a
    reference model's best format (memkit.reference), plain otherwise. The store records the resolved one."""

    def validate(self, method: str) -> None:
        super().validate(method)
        if self.prompt_format not in ("auto", *PROMPT_FORMATS):
            raise ConfigError(f"option prompt_format of method {method} must be auto or one of "
                              f"{', '.join(PROMPT_FORMATS)}, not {self.prompt_format!r}")


def text_format(lm, config: TextFormatConfig) -> QAFormat:
    """The config's prompt format for ``lm``, ``auto`` resolved (and written back, so the store records it): a
    reference model's best format, known by its GGUF file's content whatever it was named by, or plain."""
    if config.prompt_format == "auto":
        from memkit.reference import by_fingerprint

        ref = by_fingerprint(lm.fingerprint)
        config.prompt_format = ref.prompt_format if ref is not None else "plain"
    if config.prompt_format == "chat" and not getattr(lm.tokenizer, "chat_template", None):
        raise ConfigError("option prompt_format=chat needs a chat template, which the model's tokenizer lacks; "
                          "use -o prompt_format=plain or fewshot")
    return QAFormat.of(config.prompt_format, lm.tokenizer)


PAYLOAD_DTYPES = ("float32", "float16")


@dataclasses.dataclass
class PayloadConfig(MethodConfig):
    """Options of a method that stores tensors per document (adapter states, slot memories)."""

    payload_dtype: str = "float16"
    """How the stored tensors' floats are kept: float16 (half the bytes of float32, read back as float32; the
    world's F1 is unchanged, docs/benchmarks.md) or float32."""

    def validate(self, method: str) -> None:
        super().validate(method)
        if self.payload_dtype not in PAYLOAD_DTYPES:
            raise ConfigError(f"option payload_dtype of method {method} must be one of {', '.join(PAYLOAD_DTYPES)}, "
                              f"not {self.payload_dtype!r}")


def stored(arrays: dict, dtype: str) -> dict:
    """``arrays`` as a method stores them: floating arrays in ``dtype`` (``PayloadConfig.payload_dtype``), the rest
    as they are."""
    return {k: a.astype(dtype) if np.issubdtype(a.dtype, np.floating) else a for k, a in arrays.items()}


def _coerce(value, hint, name: str):
    """Parse a string option into the field's type (int, float, bool, str, or Optional of them)."""
    if not isinstance(value, str):
        return value
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    target = args[0] if args else hint
    if value.lower() in ("none", "null", "") and type(None) in typing.get_args(hint):
        return None
    try:
        if target is bool:
            if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("1", "true", "yes")
        return target(value)
    except (TypeError, ValueError):
        raise ConfigError(f"option {name}={value!r} is not a valid {getattr(target, '__name__', target)}") from None


def parse_options(pairs: list[str]) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``, refusing items without '='."""
    out = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"option {item!r} is not KEY=VALUE (--option)")
        out[key.strip()] = value.strip()
    return out


class TextAnswerer:
    """Answers a question from text passages with the frozen LM, within its context window, in a prompt format
    (``memkit.prompts.QAFormat``: plain unless a trained generator or slot model says otherwise)."""

    def __init__(self, lm, max_new_tokens: int, fmt: QAFormat | None = None):
        self.lm = lm
        self.max_new_tokens = max_new_tokens
        self.fmt = fmt or QAFormat()

    def budget(self, question: str) -> int:
        """Tokens left for passages once the question and the answer are accounted for."""
        frame = self.lm.count_tokens(self.fmt.prompt(question, ["x"])) + len(self.lm.bos_ids)
        return self.lm.max_context - self.max_new_tokens - frame

    def fit(self, question: str, passages: list[str]) -> tuple[list[str], int, bool]:
        """Keep passages in order while they fit; the first one is cut at the window if it alone is too long.

        Returns the kept passages, how many were kept whole or cut, and whether anything was cut.
        """
        left = self.budget(question)
        kept: list[str] = []
        for passage in passages:
            need = self.lm.count_tokens(passage) + 2
            if need <= left:
                kept.append(passage)
                left -= need
                continue
            if not kept and left > 0:
                ids = self.lm.encode(passage)[: max(left - 2, 1)]
                kept.append(self.lm.decode(ids))
            return kept, len(kept), True
        return kept, len(kept), False

    def context(self, question: str, retrieved: list[Retrieved], limit: int) -> Context:
        """The best ``limit`` retrieved passages that fit the window, with their sources (best first).

        The passages go into the prompt by rising score: the best one last, next to the question, where a small
        LM reads best (the world LM: 61 F1 with the gold document last of four, 7 with it first); equal
        scores keep the order they came in (the oracle's gold documents, in the question's order).
        """
        ranked = best_first(retrieved, limit)
        passages, kept, cut = self.fit(question, [r.text for r in ranked])
        sources = [Source(r.document_id, r.source, r.score, r.kind, r.span, snippet(r.text), hop=r.hop)
                   for r in ranked[:kept]]
        order = sorted(range(len(passages)), key=lambda i: ranked[i].score)
        return Context(question=question, passages=[passages[i] for i in order], sources=sources, truncated=cut)

    def answer(self, context: Context, method: str, *, delta=None, notes: AnswerNotes | None = None) -> Answer:
        """Generate the answer to one combined context (``delta``: a low-rank delta active while generating)."""
        return self.answer_many([context], method, delta=delta, notes=notes)[0]

    def answer_prepared(self, contexts, method: str, prepare, step: str, *, batch_size: int = 8) -> list[Answer]:
        """``answer_many`` with what ``prepare(contexts)`` returns for the LM to read (``{"delta": ...}`` or
        ``{"prefix": ...}``, one row per context); its time is shared out to the contexts as timing ``step``."""
        contexts = list(contexts)
        if not contexts:
            return []
        start = time.perf_counter()
        applied = prepare(contexts)
        share = (time.perf_counter() - start) * 1000 / len(contexts)
        for c in contexts:
            c.timings[step] = share
        return self.answer_many(contexts, method, batch_size=batch_size, **applied)

    def answer_many(self, contexts: list[Context], method: str, *, batch_size: int = 8, delta=None, prefix=None,
                    notes: AnswerNotes | None = None) -> list[Answer]:
        """Answers to many contexts, generated in batches of ``batch_size`` (texts equal one-at-a-time answers),
        with ``delta`` (a low-rank delta) or ``prefix`` (a key/value prefix, one row per context) applied.

        Each answer's ``generate`` timing is its share of the batched generation time; its usage holds the
        prompt's tokens (``bos_ids`` not counted) and the tokens generated; its notes are a copy of ``notes``
        (the method's) with whether the context was cut.
        """
        if not contexts:
            return []
        prompts = [self.fmt.prompt(c.question, c.passages) for c in contexts]
        start = time.perf_counter()
        texts = self.lm.generate(prompts, max_new_tokens=self.max_new_tokens, stop=self.fmt.stop, delta=delta,
                                 prefix=prefix, batch_size=batch_size)
        share = (time.perf_counter() - start) * 1000 / len(contexts)
        generated = list(self.lm.last_generated)
        answers = []
        for i, (context, prompt, text) in enumerate(zip(contexts, prompts, texts)):
            timings = {**context.timings, "generate": share}
            usage = Usage(prompt_tokens=self.lm.count_tokens(prompt),
                          generated_tokens=generated[i] if i < len(generated) else self.lm.count_tokens(text))
            said = dataclasses.replace(notes or AnswerNotes(), truncated=context.truncated)
            answers.append(Answer(question=context.question, text=text.strip(), method=method,
                                  sources=context.sources, timings=timings, usage=usage, notes=said))
        return answers


FUSIONS = ("auto", "dense", "lexical", "rrf", "score")


def check_fusion(value: str, method: str) -> None:
    if value not in FUSIONS:
        raise ConfigError(f"option fusion of method {method} must be one of {', '.join(FUSIONS)}, not {value!r}")


def resolve_fusion(config):
    """The ``FusionConfig`` a method's ``fusion`` option asks for, or None for nearest keys alone (``dense``;
    ``auto`` with any key encoder but ``minilm``, whose ``auto`` is ``score``: on SQuAD's held-out questions it
    beat BM25 and MiniLM alone at recall@1 and @5, where RRF with k=60 did not; docs/benchmarks.md)."""
    from memkit.fusion import FusionConfig

    mode = config.fusion
    if mode == "auto":
        mode = "score" if config.embedder == "minilm" else "dense"
    return None if mode == "dense" else FusionConfig(mode=mode)


@dataclasses.dataclass
class HopOption:
    """The option of a method that can search twice."""

    hop_model: str = ""
    """A hop model's directory (fitted for this method's embedder; ``packaged``: the world's, among lexical
    keys; ``memkit train hop`` fits one): questions its gate
    opens for search again from the sentences of their first document (a second retrieval hop, for questions
    that cross two documents); empty: one search."""

    def load_hop(self, embedder):
        """The hop model ``hop_model`` names, for ``embedder``'s keys (refused for others), or None: one search."""
        if not self.hop_model:
            return None
        from memkit.hops import HopModel
        from memkit.packaged import WORLD_HOP

        return HopModel.load(WORLD_HOP if self.hop_model == "packaged" else self.hop_model, embedder)


class EmbedderKeys:
    """Keys from the key encoder a method's config names (``embedder``, ``embed_layer``): the question's key,
    and its weighting by the store's key statistics where the encoder weighs queries (lexical: IDF); and how
    the engine finds memories (``fusion``: None for nearest keys alone, else a ``FusionConfig`` with the
    database's BM25)."""

    def init_keys(self, lm, config) -> None:
        from memkit.embedders import build_embedder

        self.embedder = build_embedder(lm, config.embedder, config.embed_layer)
        self.key_dim = self.embedder.dim
        self.fusion = resolve_fusion(config)
        self.hop = None
        """The second retrieval hop's model (``memkit.hops.HopModel``), or None: one search."""
        if isinstance(config, HopOption):
            self.hop = config.load_hop(self.embedder)

    def query_key(self, question: str):
        return self.embedder.embed([question])[0]

    def query_keys(self, questions):
        """Keys of ``questions``, embedded together."""
        return list(self.embedder.embed(list(questions)))

    def weigh_queries(self, keys, frequencies):
        """Query keys as the key encoder weighs them by the store's key statistics."""
        return self.embedder.weigh_queries(keys, frequencies)


class PassageMethod(EmbedderKeys):
    """What the text-reading methods share: keys from an embedder, retrieved passages fitted into the prompt.

    Subclasses say how a document becomes records (``encode``) and how many memories a question retrieves
    (``search_size``); their config carries ``embedder``, ``embed_layer`` and ``max_new_tokens``.
    """

    name = "passages"
    needs_payload = False

    def __init__(self, lm, config):
        self.lm = lm
        self.config = config
        self.init_keys(lm, config)
        self.answerer = TextAnswerer(lm, config.max_new_tokens, text_format(lm, config))

    def config_dict(self) -> dict:
        return self.config.to_dict()

    def combine(self, question: str, retrieved: list[Retrieved], top_k: int | None = None) -> Context:
        return self.answerer.context(question, retrieved, self.search_size(top_k))

    def answer(self, context: Context) -> Answer:
        return self.answerer.answer(context, self.name)

    def answer_many(self, contexts, batch_size: int = 8) -> list[Answer]:
        return self.answerer.answer_many(list(contexts), self.name, batch_size=batch_size)
