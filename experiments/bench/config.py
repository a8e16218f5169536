"""What a benchmark run is asked to do: methods (with their settings and options), protocols and their sizes.

Owns: ``BenchConfig`` (every field documented, validated in one place, errors naming the flag to change) and
``MethodSpec`` (one method as a run compares it: canonical name, setting, options). A method is written
``NAME`` or ``NAME:SETTING``; settings say where the text a method reads comes from: ``retrieve`` (searched in
the store), ``oracle`` (the question's gold documents are handed over directly; ``prompt`` and ``adapter``), ``none``
(closed book) and ``parametric`` (learnt into weights: ``finetune``). Knows nothing of models or storage.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from memkit.errors import ConfigError
from memkit.methods import METHODS, canonical_name

PROTOCOLS = ("stream", "sweep", "retention")
DEFAULT_METHODS = ("closed_book", "prompt", "prompt:oracle", "rag", "finetune")
DEFAULT_CONTEXT_TOKENS = (512, 1024, 2048, 4096, 8192)
_SETTINGS = {"closed_book": ("none",), "finetune": ("parametric",), "prompt": ("retrieve", "oracle"),
             "rag": ("retrieve",), "adapter": ("retrieve", "oracle"), "slots": ("retrieve", "oracle"),
             "hybrid": ("retrieve", "oracle")}


def settings_of(name: str) -> tuple[str, ...]:
    """The settings a canonical method name takes, its default first."""
    return _SETTINGS.get(name, ("retrieve",))


@dataclass(frozen=True)
class MethodSpec:
    """One compared method: its canonical name, its setting and its options (``KEY=VALUE`` strings)."""

    name: str
    setting: str
    options: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def label(self) -> str:
        default = settings_of(self.name)[0]
        return self.name if self.setting == default else f"{self.name}:{self.setting}"


def parse_method(text: str, options: dict[str, dict]) -> MethodSpec:
    """``"prompt:oracle"`` -> MethodSpec("prompt", "oracle", options of prompt)."""
    raw, _, setting = text.strip().partition(":")
    name = canonical_name(raw.strip())
    allowed = settings_of(name)
    setting = setting.strip() or allowed[0]
    if setting not in allowed:
        raise ConfigError(f"method {name} has no setting {setting!r}; it takes {', '.join(allowed)} (--methods)")
    return MethodSpec(name, setting, dict(options.get(name, {})))


def parse_options(pairs: list[str]) -> dict[str, dict[str, str]]:
    """``["finetune.steps=4", "rag.top_k=2"]`` -> ``{"finetune": {"steps": "4"}, "rag": {"top_k": "2"}}``."""
    out: dict[str, dict[str, str]] = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        method, dot, option = key.strip().partition(".")
        if not sep or not dot or not method or not option:
            raise ConfigError(f"option {item!r} is not METHOD.OPTION=VALUE (-o), e.g. finetune.steps=4")
        out.setdefault(canonical_name(method), {})[option.strip()] = value.strip()
    return out


def parse_ints(text: str, flag: str) -> list[int]:
    """``"512,1024"`` -> ``[512, 1024]``; refuses anything else naming ``flag``."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"{flag} takes comma-separated whole numbers, not {text!r}") from None
    if not values:
        raise ConfigError(f"{flag} needs at least one number")
    return values


@dataclass
class BenchConfig:
    """A benchmark run. Every method answers the same questions with the same seed."""

    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    """Methods to compare, each NAME or NAME:SETTING (--methods)."""
    protocols: list[str] = field(default_factory=lambda: ["stream"])
    """Protocols to run, among stream, sweep, retention (--protocol; "all" is every one)."""
    n_docs: int | None = None
    """Documents of the benchmark used, in its order (None: all) (--n-docs)."""
    context_tokens: list[int] = field(default_factory=lambda: list(DEFAULT_CONTEXT_TOKENS))
    """Context lengths of the sweep: documents are grouped into contexts of at most this many tokens
    (--context-tokens)."""
    seed: int = 0
    """Seed of torch and of the methods' own initialisation; also picks the synthetic world (--seed)."""
    retention_split: float = 0.5
    """Share of the documents ingested before the first round of retention questions (--retention-split)."""
    checkpoints: int = 1
    """Points along the stream at which the stream protocol asks its questions (--checkpoints)."""
    max_groups: int | None = None
    """Most contexts per length that the sweep evaluates (None: every context with a question) (--max-groups)."""
    max_questions: int | None = None
    """Most questions a step asks: a sample fixed by the seed and each question's id, so every method and both
    retention rounds ask the same ones (None: all) (--max-questions)."""
    batch_size: int = 8
    """Questions generated together, and documents ingested together (--batch-size)."""
    method_options: dict[str, dict[str, str]] = field(default_factory=dict)
    """Options per canonical method name, from -o METHOD.OPTION=VALUE."""

    def validate(self) -> None:
        unknown = [p for p in self.protocols if p not in PROTOCOLS]
        if unknown or not self.protocols:
            raise ConfigError(f"unknown protocol {unknown[0] if unknown else '(none)'!r}; choose among "
                              f"{', '.join(PROTOCOLS)} or all (--protocol)")
        if not self.methods:
            raise ConfigError("no methods to compare (--methods)")
        if self.n_docs is not None and self.n_docs < 1:
            raise ConfigError("--n-docs must be at least 1")
        if not self.context_tokens or min(self.context_tokens) < 1:
            raise ConfigError("--context-tokens must be positive numbers")
        if not 0.0 < self.retention_split < 1.0:
            raise ConfigError("--retention-split must be between 0 and 1 (exclusive)")
        if self.checkpoints < 1:
            raise ConfigError("--checkpoints must be at least 1")
        if self.max_groups is not None and self.max_groups < 1:
            raise ConfigError("--max-groups must be at least 1")
        if self.max_questions is not None and self.max_questions < 1:
            raise ConfigError("--max-questions must be at least 1")
        if self.batch_size < 1:
            raise ConfigError("--batch-size must be at least 1")
        for name in self.method_options:
            canonical_name(name)
        specs = self.specs()
        labels = [s.label for s in specs]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"a method is named twice in --methods ({', '.join(labels)})")
        for spec in specs:  # option names and values are checked now, before any model is loaded
            METHODS[spec.name][1].from_dict(spec.options, spec.name)

    def specs(self) -> list[MethodSpec]:
        return [parse_method(m, self.method_options) for m in self.methods]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
