"""Every choice of the world LM's build, in one validated dataclass saved beside the model as recipe.json.

Owns: ``Recipe`` (sizes, schedule, the training mixture and its curriculum) and its validation, whose errors name
the flag to change. The defaults are the recipe that built memkit's packaged world LM on a 2-core CPU in 38
minutes (run e10 in docs/world-lm.md, with the runs behind each choice), except ``bf16``, now off (see there). Knows nothing of data, models or
training loops.
"""

from __future__ import annotations

from dataclasses import dataclass

FRACTIONS = ("short_until", "reading_only_until", "snippet_until", "snippet_floor", "snippet_keep",
             "snippet_facts_from")


@dataclass
class Recipe:
    """The world LM's build. Fractions ("until") are fractions of the planned training steps."""

    seed: int = 0                 # model init, data order and the reading worlds (--seed)
    world_seed: int = 0           # the benchmark world whose pretrain entities the LM memorises
    vocab_size: int = 3072        # 3072 gives every name word and year one token (2048: a name is ~2.5 tokens)
    hidden: int = 256
    layers: int = 4
    heads: int = 4                # head size 64
    intermediate: int = 768
    window: int = 512             # context length trained and served (max_position_embeddings)
    batch_size: int = 8           # rows of `window` tokens per step
    short_window: int = 256       # rows are this long (batch_size x window / short_window of them) ...
    short_until: float = 0.5      # ... for this first fraction of training: short reading examples pack well
    lr: float = 3e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 150
    weight_decay: float = 0.05
    minutes: float = 40.0         # wall-clock training budget (--minutes)
    max_steps: int = 0            # 0: as many as the budget allows
    mix_reading: float = 0.35     # share of examples drawn from each stream: documents then questions, ...
    mix_closed_book: float = 0.45  # ... questions on pretrain entities with no documents, ...
    mix_documents: float = 0.05   # ... pretrain documents as plain text, ...
    mix_copy: float = 0.15        # ... lists of world words said twice (loss on the repeat: multi-token copying)
    copy_weight: float = 0.5      # loss weight on the repeated list
    reading_only_until: float = 0.2  # before this, only reading and copy examples: copying forms before the
                                     # closed-book stream teaches the answer position to recall from weights
    snippet_until: float = 1.0    # curriculum: reading examples start as snippets of their documents; the
    snippet_floor: float = 1.0    # snippet share falls linearly from 1 to snippet_floor at snippet_until (the
                                  # defaults read snippets throughout: reading transfers to whole documents,
                                  # and whole ones cost 3-5x the compute per answer; run e7 against e10)
    snippet_keep: float = 0.3     # chance that a sentence with no answer in it stays in a snippet ...
    snippet_grow: bool = True     # ... growing from 0 to snippet_keep over snippet_until
    snippet_facts_from: float = 1.0   # from here on snippets keep every fact sentence (only filler is dropped);
                                      # 1.0: never (tried from 0.15 in run e9: slower, and birth years broke)
    passage_weight: float = 0.1   # loss weight on document tokens inside reading examples
    question_weight: float = 0.2  # loss weight on question tokens (they repeat the entity's name: copying)
    max_distractors: int = 2      # other documents mixed among a reading example's gold ones
    questions_per_context: int = 6  # a reading example answers up to this many questions about its documents
    threads: int = 2
    device: str = "auto"          # auto: cuda when present, else cpu
    bf16: bool = False            # bfloat16 autocast for the forward pass (master weights stay float32): for a
                                  # GPU or a CPU with bfloat16 instructions; on an AVX2-only CPU a step takes
                                  # ~20x longer (the packaged model was built with it on a machine where it paid)
    eval_every: int = 1000         # steps between probes
    eval_questions: int = 60      # questions per probe set
    checkpoint_every: int = 250   # steps between checkpoints in <out>/checkpoint (0: none)
    resume: str = ""              # a checkpoint (or the --out folder of an interrupted run) to go on from
    init_from: str = ""           # continue from a model this recipe saved (its tokenizer and weights); the
                                  # window may grow (RoPE positions), the rest of the shape must match

    def validate(self) -> None:
        """Raise ValueError naming the first bad field and its flag."""
        if self.hidden % self.heads:
            raise ValueError("hidden must be a multiple of heads (--hidden/--heads)")
        if min(self.mix_reading, self.mix_closed_book, self.mix_documents, self.mix_copy) < 0:
            raise ValueError("mix shares must be >= 0")
        if abs(self.mix_reading + self.mix_closed_book + self.mix_documents + self.mix_copy - 1) > 1e-6:
            raise ValueError("the mix shares (--mix-reading, --mix-closed-book, --mix-documents, --mix-copy) "
                             "must add up to 1")
        if self.mix_reading + self.mix_copy <= 0 and self.reading_only_until > 0:
            raise ValueError("--reading-only-until needs --mix-reading or --mix-copy above 0")
        if self.minutes <= 0 and self.max_steps <= 0:
            raise ValueError("give a budget: --minutes or --max-steps")
        if not 16 <= self.short_window <= self.window:
            raise ValueError("short_window must be between 16 and window (--short-window)")
        for name in FRACTIONS:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1 (--{name.replace('_', '-')})")
        if self.snippet_until <= 0:
            raise ValueError("snippet_until must be above 0 (--snippet-until)")
