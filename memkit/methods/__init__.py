"""The table of memory methods: name -> (class, config class), and the one builder.

Owns: which methods exist and how a stored ``(name, config dict)`` becomes a live method again.
"""

from __future__ import annotations

from memkit.errors import ConfigError
from memkit.methods.adapter import Adapter, AdapterConfig
from memkit.methods.base import Answer, Context, Method, Record, Retrieved, Source
from memkit.methods.closed_book import ClosedBook, ClosedBookConfig
from memkit.methods.finetune import Finetune, FinetuneConfig
from memkit.methods.hybrid import Hybrid, HybridConfig
from memkit.methods.prompt import Prompt, PromptConfig
from memkit.methods.rag import Rag, RagConfig
from memkit.methods.slots import Slots, SlotsConfig

METHODS = {
    "closed_book": (ClosedBook, ClosedBookConfig),
    "prompt": (Prompt, PromptConfig),
    "rag": (Rag, RagConfig),
    "finetune": (Finetune, FinetuneConfig),
    "adapter": (Adapter, AdapterConfig),
    "slots": (Slots, SlotsConfig),
    "hybrid": (Hybrid, HybridConfig),
}
ALIASES = {"closed": "closed_book", "closed-book": "closed_book", "full": "prompt", "full-context": "prompt",
           "sft": "finetune", "lora": "finetune",
           "adapters": "adapter", "generative-adapter": "adapter", "memory-slots": "slots", "cmt": "slots",
           "adapter+slots": "hybrid"}


def canonical_name(name: str) -> str:
    key = ALIASES.get(name, name)
    if key not in METHODS:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(METHODS)} (--method)")
    return key


def build_method(name: str, lm, options: dict | None = None) -> Method:
    """A live method on ``lm`` from its name and options (strings or stored values)."""
    key = canonical_name(name)
    cls, config_cls = METHODS[key]
    return cls(lm, config_cls.from_dict(options, key))


__all__ = ["METHODS", "Answer", "Context", "Method", "Record", "Retrieved", "Source", "build_method",
           "canonical_name"]
