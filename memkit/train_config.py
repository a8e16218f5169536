"""The options of memkit's training runs, as plain dataclasses free of torch: ``LoopConfig`` (the loop's, shared),
``AdapterTrainConfig`` (a generator's run), ``SlotShape`` (a slot model's sizes and switches) and
``SlotTrainConfig`` (a slot model's run), with the choices their checks accept.

Owns: these configs and their ``validate``. They live apart from the code that trains (``memkit.training``,
``memkit.adapters.train``, ``memkit.slots.train``, which re-export them) so that the command line can build its
``memkit train`` options from them without importing torch or transformers (``memkit --help`` stays fast).
Knows nothing of models, tensors, storage or the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from memkit.errors import ConfigError
from memkit.prompts import PROMPT_FORMATS

PRECISIONS = ("fp32", "bf16")


@dataclass
class LoopConfig:
    """The loop's own choices, shared by every training config (each adds its model's and losses' options)."""

    lr: float = 1e-3
    """Peak AdamW learning rate."""
    warmup_steps: int = 50
    """Steps of linear learning-rate warm-up (then cosine decay to ``min_lr_ratio`` of the peak)."""
    min_lr_ratio: float = 0.1
    """The learning rate at the end of the schedule, as a fraction of the peak."""
    weight_decay: float = 0.0
    """AdamW weight decay (never on parameters of fewer than 2 dimensions: norm scales, biases)."""
    max_grad_norm: float = 1.0
    """Gradients are clipped to this global norm (0: no clipping)."""
    max_steps: int = 0
    """Stop after this many optimizer steps (0: the time budget decides)."""
    minutes: float = 20.0
    """Wall-clock budget, counted over a run and its resumptions."""
    seed: int = 0
    """Seeds the model's initialisation, the data order and the held-out split."""
    eval_every: int = 200
    """Optimizer steps between probes on held-out items."""
    init_from: str = ""
    """A saved model to go on training (its architecture options replace this run's); empty: a fresh one."""
    batch_size: int = 16
    """Items per optimizer step, split evenly over the processes and each one's micro-batches (--grad-accum)."""
    grad_accum: int = 1
    """Micro-batches per process per optimizer step (gradient accumulation): the same step in less memory."""
    precision: str = "fp32"
    """fp32, or bf16: the loss computed under bfloat16 autocast (CPU or a CUDA GPU that has bfloat16); the trained
    parameters and the optimizer stay float32."""
    grad_checkpointing: bool = False
    """Recompute the frozen LM's layer activations in the backward pass instead of keeping them (less memory,
    about one more forward pass of time)."""
    checkpoint_every: int = 100
    """Optimizer steps between checkpoints, written to the run's checkpoint directory (0: none)."""
    inputs: str = ""
    """What the run reads, set by its recipe (the base model's fingerprint and weights digest, the data specs and
    split): a resumed run must read the same, which its checkpoint checks. Not a command-line option."""
    resume: str = ""
    """A checkpoint directory (a run's checkpoint directory, or one checkpoint in it) to go on from; empty: start
    afresh."""

    def validate(self) -> None:
        if self.max_steps <= 0 and self.minutes <= 0:
            raise ConfigError("give a budget: --minutes or --max-steps")
        if self.eval_every < 1:
            raise ConfigError("--eval-every must be at least 1")
        if self.batch_size < 1:
            raise ConfigError("--batch-size must be at least 1")
        if self.grad_accum < 1:
            raise ConfigError("--grad-accum must be at least 1")
        if self.batch_size % self.grad_accum:
            raise ConfigError(f"--batch-size {self.batch_size} does not split into --grad-accum {self.grad_accum} "
                              f"micro-batches; make --batch-size a multiple of --grad-accum")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision is one of {', '.join(PRECISIONS)}")
        if self.checkpoint_every < 0:
            raise ConfigError("--checkpoint-every must be 0 (no checkpoints) or more")
        if self.lr <= 0:
            raise ConfigError("--lr must be above 0")
        if self.warmup_steps < 0:
            raise ConfigError("--warmup-steps must be 0 or more")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError("--min-lr-ratio is a fraction in [0, 1]")
        if self.weight_decay < 0 or self.max_grad_norm < 0:
            raise ConfigError("--weight-decay and --max-grad-norm must be 0 or more")


NORMS = ("svd", "frobenius")
KEY_SOURCES = ("hidden", "input")
MERGES = ("sum", "score")


@dataclass
class AdapterTrainConfig(LoopConfig):
    """Every choice of a generator training run (with the loop's, ``LoopConfig``); saved beside the generator."""

    state_rank: int = 64
    """R: the generator's state size."""
    svd_rank: int = 16
    """r: rank of the applied delta."""
    alpha: float = 64.0
    """Delta scale alpha / R."""
    norm: str = "svd"
    """svd (rank-r, singular values set to 1) or frobenius (the state over its Frobenius norm)."""
    center: bool = False
    """Centre each chunk's hidden states before the projections."""
    mean_state: bool = True
    """Subtract a per-token mean state (calibrated on training documents first; see GeneratorConfig)."""
    base_rank: int = 8
    """Rank of the generator's document-independent LoRA (see GeneratorConfig.base_rank)."""
    key_source: str = "hidden"
    """hidden or input: where a context token's key comes from (see GeneratorConfig.key_source)."""
    targets: str = "attn_out"
    """attn_out or mlp_out (every decoder layer's output projection of that kind)."""
    chunk_tokens: int = 128
    """Tokens per chunk when reading a document."""
    lr: float = 2e-3
    w_reconstruction: float = 0.3
    """Weight of the reconstruction loss."""
    w_completion: float = 0.3
    """Weight of the completion loss."""
    w_contrast: float = 1.0
    """Weight of the contrast loss: a hinge asking the answer loss with another item's adapter to exceed the loss
    with the item's own adapter by ``contrast_margin`` nats, so a delta cannot help without its documents."""
    contrast_margin: float = 1.0
    """Margin of the contrast hinge, in nats."""
    pretrain_steps: int = 0
    """Self-supervised steps first: only reconstruction and completion (each at weight 1), no questions; then
    QA fine-tuning with every loss. Counted within ``max_steps`` and the time budget."""
    merge_extra: float = 0.3
    """Chance that an item's state also holds 1 to ``merge_max`` other items' documents (merge robustness)."""
    merge_max: int = 2
    """Most other items' documents merged into an item's state (see ``merge_extra``)."""
    prompt_format: str = "plain"
    """plain, fewshot or chat: how the questions and answers are laid out (``memkit.prompts.QAFormat``); recorded in the
    generator, whose method answers in the same format."""
    merge: str = "sum"
    """How an item's documents' states add when it holds several: ``sum`` (plain sum) or ``score`` (each state
    scaled to unit norm and weighted, the item's own documents above the merged others, weights summing to 1:
    the adapter method's ``score`` merge of retrieved documents)."""
    w_distill: float = 0.0
    """Weight of distillation from reading: on the answer tokens, KL from the LM reading the item's documents in
    its prompt (the teacher, no gradient) to the LM reading with the adapter (0: off). An item whose prompt
    with its documents does not fit the LM's context gets no teacher."""

    def validate(self) -> None:
        super().validate()
        if self.batch_size < 1 or self.chunk_tokens < 8:
            raise ConfigError("--batch-size must be at least 1 and --chunk-tokens at least 8")
        if self.state_rank < 1 or self.svd_rank < 1 or self.base_rank < 0:
            raise ConfigError("--state-rank and --svd-rank must be at least 1 and --base-rank 0 or more")
        if self.w_contrast < 0 or self.w_reconstruction < 0 or self.w_completion < 0:
            raise ConfigError("the loss weights (--w-contrast, --w-reconstruction, --w-completion) must be 0 or more")
        if self.targets not in ("attn_out", "mlp_out"):
            raise ConfigError("--targets is attn_out or mlp_out")
        if self.norm not in NORMS:
            raise ConfigError(f"--norm is one of {', '.join(NORMS)}")
        if self.key_source not in KEY_SOURCES:
            raise ConfigError(f"--key-source is one of {', '.join(KEY_SOURCES)}")
        if self.pretrain_steps < 0:
            raise ConfigError("--pretrain-steps must be 0 or more")
        if not 0 <= self.merge_extra <= 1:
            raise ConfigError("--merge-extra is a probability in [0, 1]")
        if self.merge_max < 1:
            raise ConfigError("--merge-max must be at least 1")
        if self.prompt_format not in PROMPT_FORMATS:
            raise ConfigError(f"--prompt-format is one of {', '.join(PROMPT_FORMATS)}")
        if self.merge not in MERGES:
            raise ConfigError(f"--merge is one of {', '.join(MERGES)}")
        if self.w_distill < 0:
            raise ConfigError("--w-distill must be 0 or more")


READERS = ("slots", "layers")
CONDITIONINGS = ("none", "self")


@dataclass
class SlotShape:
    """The sizes and switches a slot model is built with (a training run chooses them)."""

    slots: int = 8
    """m: memory vectors per document (MAC used 24 for documents of a few hundred tokens)."""
    mem_dim: int = 256
    """e: size of a memory vector."""
    key_dim: int = 128
    """Size of the matching key."""
    prefix_len: int = 8
    """P: prefix positions the LM reads (the aggregator's latents)."""
    blocks: int = 2
    """Cross-attention blocks of the aggregator."""
    heads: int = 4
    """Attention heads of each block (must divide mem_dim)."""
    temperature: float = 0.05
    """Matching scores become attention weights as softmax(score / temperature)."""
    max_tokens: int = 256
    """Longest token window read into one group of slots (``bos_ids`` included; at most the LM's context less
    ``slots``); a longer text is read whole in several windows, one group of ``slots`` vectors each."""
    matching: bool = True
    """Whether the keys were trained to match (self-matching) and the matching scores weigh the memories in the
    aggregation; without it (MAC) every memory enters with equal weight and attention alone decides."""
    prompt_format: str = "plain"
    """The prompt format the model is trained with (plain, fewshot or chat: ``memkit.prompts``); its method answers in it."""
    reader: str = "slots"
    """How a text becomes its memory vectors: ``slots`` (learnt input vectors read after the text; the LM's last
    layer at them, through per-slot heads: gradients run back through the LM) or ``layers`` (learnt queries
    attend over the text's hidden states at the LM's layers, read without gradients: no backward pass through
    the LM for reading)."""
    reader_rank: int = 0
    """Rank of a LoRA on the LM, active only while the ``slots`` reader reads a text into its slots (ICAE's
    trainable encoder; 0: none, the LM reads with its own weights). The LM answers without it."""
    reader_targets: str = "qv"
    """The modules that LoRA adapts (as fine-tuning's ``targets``: qv, attn_out, mlp_out or name suffixes)."""
    reader_layers: int = 0
    """Hidden-state layers the ``layers`` reader attends over, evenly spaced from the embeddings to the last
    layer (0: every layer)."""
    reader_blocks: int = 2
    """Cross-attention blocks of the ``layers`` reader."""
    conditioning: str = "none"
    """How the question shapes the aggregation: ``none`` (its vectors join the cross-attention queries, which
    attend independently: with one memory the question changes nothing) or ``self`` (each aggregator block
    starts with self-attention over the latents and the question's vectors, so the latents that read the
    memories depend on the question)."""

    def shape(self) -> dict:
        """These fields as a dict (the options ``SlotModel.for_lm`` takes)."""
        return {f.name: getattr(self, f.name) for f in fields(SlotShape)}

    def validate(self) -> None:
        for name in ("slots", "mem_dim", "key_dim", "prefix_len", "blocks", "heads", "max_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"slot model option {name} must be at least 1")
        if self.mem_dim % self.heads:
            raise ConfigError(f"slot model option heads ({self.heads}) must divide mem_dim ({self.mem_dim})")
        if self.temperature <= 0:
            raise ConfigError("slot model option temperature must be above 0")
        if self.prompt_format not in PROMPT_FORMATS:
            raise ConfigError(f"slot model option prompt_format (--prompt-format) is one of {', '.join(PROMPT_FORMATS)}")
        if self.reader not in READERS:
            raise ConfigError(f"slot model option reader (--reader) is one of {', '.join(READERS)}")
        if self.conditioning not in CONDITIONINGS:
            raise ConfigError(f"slot model option conditioning (--conditioning) is one of {', '.join(CONDITIONINGS)}")
        if self.reader_rank < 0:
            raise ConfigError("slot model option reader_rank (--reader-rank) must be 0 or more")
        if self.reader_rank and self.reader != "slots":
            raise ConfigError("slot model option reader_rank (--reader-rank) adapts the LM while the slots reader "
                              "reads; the layers reader reads the LM's states without gradients: leave it 0")
        if self.reader_layers < 0 or self.reader_blocks < 1:
            raise ConfigError("slot model options reader_layers (--reader-layers) must be 0 or more and "
                              "reader_blocks (--reader-blocks) at least 1")


OBJECTIVES = ("memory-aware", "qa")
AGGREGATIONS = ("topk", "all")


@dataclass
class SlotTrainConfig(SlotShape, LoopConfig):
    """Every choice of a slot-model training run: the model's shape (``SlotShape``), the loop's
    (``LoopConfig``) and the losses'; saved beside the model."""

    objective: str = "memory-aware"
    """memory-aware (answer loss, plus each document's LM loss read through its own memory) or qa (MAC)."""
    aggregation: str = "topk"
    """How a question aggregates the bank while training: topk or all."""
    top_k: int = 4
    """Memories a question aggregates while training with aggregation topk (its own documents among them)."""
    w_lm: float = 0.3
    """Weight of the memory-aware LM loss (objective memory-aware)."""
    w_match: float = 1.0
    """Weight of the self-matching loss (matching on)."""
    match_temperature: float = 0.05
    """Temperature of the self-matching loss's softmax over the bank."""
    w_contrast: float = 0.0
    """Weight of a contrast hinge: the answer loss read through another question's aggregated memories must
    exceed the loss through the question's own by ``contrast_margin`` nats (0: off)."""
    contrast_margin: float = 1.0
    """Margin of the contrast hinge, in nats."""
    with_adapter: str = ""
    """An adapter generator's directory (``packaged``: the world LM's) whose delta, made from each question's
    own documents, is applied while the answer losses are taken (the hybrid method's slot model); empty: none."""
    pretrain_steps: int = 0
    """Self-supervised steps first: each document's own tokens read through the prefix of its own memory (the
    memory-aware LM loss alone, no questions), on the corpus or the items' documents."""
    w_distill: float = 0.0
    """Weight of distillation from reading: on the answer tokens, KL from the LM reading the question's own
    documents in its prompt (the teacher, no gradient) to the LM reading the aggregated prefix (0: off). A
    question whose documents do not fit the LM's context in a prompt gets no teacher."""
    adapter_chunk_tokens: int = 128
    """Tokens per chunk the ``with_adapter`` generator reads a document in: the adapter (and hybrid) method's
    ``chunk_tokens`` that the slot model will be used with."""

    def validate(self) -> None:
        LoopConfig.validate(self)
        SlotShape.validate(self)
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"--objective is one of {', '.join(OBJECTIVES)}")
        if self.aggregation not in AGGREGATIONS:
            raise ConfigError(f"--aggregation is one of {', '.join(AGGREGATIONS)}")
        if self.batch_size < 2 * self.grad_accum:
            raise ConfigError("--batch-size must be at least 2 x --grad-accum (each micro-batch is the bank its "
                              "questions match against)")
        if self.top_k < 1:
            raise ConfigError("--top-k must be at least 1")
        if self.match_temperature <= 0:
            raise ConfigError("--match-temperature must be above 0")
        if self.pretrain_steps < 0:
            raise ConfigError("--pretrain-steps must be 0 or more")
        if self.adapter_chunk_tokens < 8:
            raise ConfigError("--adapter-chunk-tokens must be at least 8")
        if min(self.w_lm, self.w_match, self.w_contrast, self.w_distill) < 0:
            raise ConfigError("the loss weights (--w-lm, --w-match, --w-contrast, --w-distill) must be 0 or more")
