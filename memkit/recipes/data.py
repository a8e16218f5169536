"""Training data for the generator and the slot model from any source: dataset specs, a corpus, held-out items.

Owns: parsing data specs (``squad:PATH``, ``streamingqa:PATH``, ``archivalqa:PATH``, ``msc:PATH``,
``metaicl:PATH``, ``jsonl:PATH`` for the generic format, ``world`` and ``world:SEED``), turning each into
``ContextQA`` items (the documents a question needs, and up to ``max_questions`` questions answered from
them), mixing several sources into one endless, seeded stream, the held-out items the probe reads (an
``--eval-data`` spec, or a fraction of the documents; split by document, so nothing evaluated is trained on),
reading a plain-text ``--corpus`` for the self-supervised stage, and a summary of all of it that is saved
beside the trained model. Every failure is a ``ConfigError`` naming the flag to change. Knows nothing of models
or of how items are trained on.

The generic JSONL format (``jsonl:PATH``), one object a line::

    {"context": "text the answers come from" | ["document", "another document"],
     "qa": [{"question": "...", "answer": "..." | ["...", "..."]}, ...],
     "id": "optional, for error messages"}
"""

from __future__ import annotations

import hashlib
import itertools
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol

from memkit.adapters.train import ContextQA
from memkit.errors import ConfigError

WORLD = "world"
GENERIC = "jsonl"
GENERIC_EXPECTED = ('one JSON object a line: {"context": str or [str, ...], "qa": [{"question": str, '
                    '"answer": str or [str, ...]}, ...]}')


@dataclass(frozen=True)
class DataSpec:
    """One ``--data`` (or ``--eval-data``) value: a source kind and its path or world seed."""

    kind: str
    path: str | None = None
    seed: int | None = None

    def __str__(self) -> str:
        if self.kind == WORLD:
            return WORLD if self.seed is None else f"{WORLD}:{self.seed}"
        return f"{self.kind}:{self.path}"


def kinds() -> list[str]:
    """Every source kind a spec may name."""
    from memkit.datasets.loaders import LOADERS

    return [*LOADERS, GENERIC, WORLD]


def parse_spec(text: str, flag: str = "--data") -> DataSpec:
    """``KIND:PATH``, ``world`` or ``world:SEED``; a ``ConfigError`` naming ``flag`` otherwise."""
    kind, sep, rest = text.strip().partition(":")
    kind = kind.strip().lower()
    if kind == WORLD:
        if not sep:
            return DataSpec(WORLD)
        try:
            return DataSpec(WORLD, seed=int(rest))
        except ValueError:
            raise ConfigError(f"{flag} {text!r}: world takes a whole-number seed (world:3)") from None
    if kind not in kinds():
        raise ConfigError(f"{flag} {text!r}: unknown source {kind!r}; use one of {', '.join(kinds())} "
                          f"(KIND:PATH, or world[:SEED])")
    if not sep or not rest.strip():
        raise ConfigError(f"{flag} {text!r}: give the local file or directory, as {kind}:PATH")
    path = Path(rest.strip()).expanduser()
    if not path.exists():
        raise ConfigError(f"{flag} {text!r}: no such file or directory {path}")
    return DataSpec(kind, path=str(path))


# ---- one source -> items ---------------------------------------------------------------------------------------
def benchmark_items(bench, max_questions: int) -> tuple[list[ContextQA], int]:
    """Items of a ``Benchmark``: its questions grouped by the documents they need (in order), each group cut
    into items of at most ``max_questions`` questions, each answered by its first gold answer. Returns the items
    and how many questions were left out (those citing no document: nothing to read them from)."""
    groups: dict[tuple[str, ...], list[tuple[str, str]]] = {}
    skipped = 0
    for q in bench.questions:
        if not q.doc_ids or not q.answers:
            skipped += 1
            continue
        groups.setdefault(tuple(dict.fromkeys(q.doc_ids)), []).append((q.question, q.answers[0]))
    items = []
    for doc_ids, qas in groups.items():
        documents = [bench.document(d).text for d in doc_ids]
        for start in range(0, len(qas), max_questions):
            items.append(ContextQA(documents, qas[start:start + max_questions]))
    return items, skipped


def generic_items(path: str | Path, max_questions: int) -> list[ContextQA]:
    """Items of the generic JSONL format (module docstring); errors name the line."""
    from memkit.datasets.loaders.common import DatasetError, field, iter_jsonl, string_list

    path = Path(path)
    files = sorted(path.rglob("*.jsonl")) + sorted(path.rglob("*.jsonl.gz")) if path.is_dir() else [path]
    if not files:
        raise ConfigError(f"--data {GENERIC}:{path}: the directory holds no .jsonl files")
    items: list[ContextQA] = []
    try:
        for file in files:
            for where, obj in iter_jsonl(GENERIC, file, GENERIC_EXPECTED):
                opts = dict(dataset=GENERIC, path=file, where=where, expected=GENERIC_EXPECTED)
                context = string_list(field(obj, "context", (str, list), **opts), "context", **opts)
                context = [c for c in context if c.strip()]
                if not context:
                    raise DatasetError(GENERIC, file, "field 'context' is empty", where=where,
                                       expected=GENERIC_EXPECTED)
                qas = []
                for k, qa in enumerate(field(obj, "qa", list, nonempty=True, **opts)):
                    inner = dict(opts, where=f"{where}, qa[{k}]")
                    question = field(qa, "question", str, nonempty=True, **inner)
                    answers = string_list(field(qa, "answer", (str, list), **inner), "answer", **inner)
                    answers = [a for a in answers if a.strip()]
                    if not answers:
                        raise DatasetError(GENERIC, file, "field 'answer' is empty", where=inner["where"],
                                           expected=GENERIC_EXPECTED)
                    qas.append((question, answers[0]))
                for start in range(0, len(qas), max_questions):
                    items.append(ContextQA(context, qas[start:start + max_questions]))
    except DatasetError as exc:
        raise ConfigError(str(exc)) from None
    if not items:
        raise ConfigError(f"--data {GENERIC}:{path}: no items ({GENERIC_EXPECTED})")
    return items


def load_items(spec: DataSpec, max_questions: int) -> tuple[list[ContextQA], dict]:
    """The items of a finite source and what was read (counts)."""
    if spec.kind == GENERIC:
        items = generic_items(spec.path, max_questions)
        return items, {"items": len(items)}
    from memkit.datasets.loaders import load_benchmark

    try:
        bench = load_benchmark(spec.kind, spec.path)
    except ValueError as exc:  # DatasetError: names the dataset, path, place and what was expected
        raise ConfigError(f"{spec}: {exc}") from None
    items, skipped = benchmark_items(bench, max_questions)
    if not items:
        raise ConfigError(f"--data {spec}: no question cites a document to read it from")
    return items, {"items": len(items), "documents": len(bench.documents), "questions": len(bench.questions),
                   "questions_without_documents": skipped}


def document_key(text: str) -> str:
    """A document's identity across sources: the SHA-256 of its text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---- endless, mixed, held-out ------------------------------------------------------------------------------------
def cycle_shuffled(items: list[ContextQA], seed: int) -> Iterator[ContextQA]:
    """``items`` again and again, each pass in a new seeded order."""
    for epoch in itertools.count():
        order = list(range(len(items)))
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
        for i in order:
            yield items[i]


def mix(streams: list[Iterator[ContextQA]], seed: int) -> Iterator[ContextQA]:
    """One item at a time from a source chosen at random (seeded), every source with the same share."""
    rng = random.Random(seed)
    while True:
        yield next(streams[rng.randrange(len(streams))])


def split_by_document(items: list[ContextQA], fraction: float, seed: int) -> tuple[list[ContextQA], list[ContextQA], int]:
    """``(train, held_out, dropped)``: a document is held out with probability ``fraction`` (by its text's hash
    and the seed); an item whose documents are all held out is held out, one with none is trained on, and one
    with both kinds is dropped, so no held-out document is ever read in training."""
    def held(text: str) -> bool:
        digest = hashlib.sha256(f"{seed}:{document_key(text)}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < fraction

    train, heldout, dropped = [], [], 0
    for it in items:
        marks = {held(d) for d in it.documents}
        if marks == {True}:
            heldout.append(it)
        elif marks == {False}:
            train.append(it)
        else:
            dropped += 1
    return train, heldout, dropped


@dataclass
class TrainingData:
    """What a training run reads: an endless stream of items, the held-out items its probe asks, an optional
    corpus for the self-supervised stage, and a summary saved beside the trained model."""

    stream: Iterator[ContextQA]
    heldout: list[ContextQA]
    corpus: list[str] = field(default_factory=list)
    calibration: list[str] = field(default_factory=list)
    """Training documents to calibrate a generator's mean state on (never held-out ones): those of the first 64
    training items of each source."""
    summary: dict = field(default_factory=dict)


class WorldSource(Protocol):
    """Where ``world`` specs come from: the synthetic world (``experiments.world.adapter_data``), which the library
    does not know; the front door hands it in."""

    def training_items(self, seed: int = 0) -> Iterator[ContextQA]:
        """An endless stream of items about fresh worlds' training entities."""

    def heldout_items(self, n: int = 48, *, world_seed: int = 0) -> list[ContextQA]:
        """The benchmark world's training entities (never its test entities)."""


def load_data(specs: list[str], *, seed: int = 0, eval_specs: list[str] | None = None, eval_fraction: float = 0.1,
              eval_max: int = 64, corpus: list[str] | None = None, max_questions: int = 4,
              world: WorldSource | None = None) -> TrainingData:
    """Resolve ``--data`` specs (several mix, each with the same share of the stream), the held-out items
    (``--eval-data`` specs, or ``eval_fraction`` of each finite source's documents; the world holds out its
    benchmark world's training entities) and the ``--corpus`` paths; ``world`` answers ``world`` specs."""
    if not specs:
        raise ConfigError("give at least one --data spec (e.g. --data squad:train-v1.1.json, or --data world)")
    if not 0 <= eval_fraction < 1:
        raise ConfigError("--eval-fraction must be in [0, 1)")
    if eval_max < 1 or max_questions < 1:
        raise ConfigError("--eval-max and --max-questions must be at least 1")
    parsed = [parse_spec(s) for s in specs]
    evals = [parse_spec(s, "--eval-data") for s in eval_specs or []]
    streams: list[Iterator[ContextQA]] = []
    heldout: list[ContextQA] = []
    calibration: list[str] = []
    sources = []
    finite: list[tuple[DataSpec, list[ContextQA], dict]] = [(s, *load_items(s, max_questions))
                                                            for s in parsed if s.kind != WORLD]
    eval_items = [it for s in evals if s.kind != WORLD for it in load_items(s, max_questions)[0]]
    held_docs = {document_key(d) for it in eval_items for d in it.documents}
    for spec, items, counts in finite:
        if evals:
            train = [it for it in items if not any(document_key(d) in held_docs for d in it.documents)]
            held, dropped = [], len(items) - len(train)
        else:
            train, held, dropped = split_by_document(items, eval_fraction, seed)
        if not train:
            raise ConfigError(f"--data {spec}: every item is held out; lower --eval-fraction or give --eval-data")
        streams.append(cycle_shuffled(train, seed))
        heldout += held
        calibration += [d for it in train[:64] for d in it.documents]
        sources.append({"spec": str(spec), **counts, "train_items": len(train), "heldout_items": len(held),
                        "dropped_items_sharing_documents": dropped})
    if any(s.kind == WORLD for s in [*parsed, *evals]) and world is None:
        raise ConfigError("--data world needs the synthetic world (experiments.world), which this memkit lacks; "
                          "give --data KIND:PATH")
    for spec in parsed:
        if spec.kind == WORLD:
            training_items, heldout_items = world.training_items, world.heldout_items
            world_seed = seed if spec.seed is None else spec.seed
            streams.append(training_items(world_seed))
            calibration += [d for it in itertools.islice(training_items(world_seed + 1000), 64) for d in it.documents]
            held = [] if evals else heldout_items()
            heldout += held
            sources.append({"spec": str(spec), "train_items": "endless: training entities of fresh worlds "
                            f"(stream seed {world_seed})", "heldout_items": len(held),
                            "heldout": "the benchmark world's training entities (never test entities)"})
    for spec in evals:
        if spec.kind == WORLD:
            heldout += world.heldout_items(world_seed=spec.seed or 0)
    heldout += eval_items
    held_keys = {document_key(d) for it in heldout for d in it.documents}
    if not heldout:
        raise ConfigError("no held-out items to probe with: raise --eval-fraction or give --eval-data")
    heldout = _spread(heldout, eval_max)
    texts, refused = read_corpus(corpus or [])
    kept = [t for t in texts if document_key(t) not in held_keys]
    corpus_heldout, texts = len(texts) - len(kept), kept
    summary = {"data": [str(s) for s in parsed], "eval_data": [str(s) for s in evals], "sources": sources,
               "heldout_items": len(heldout), "corpus_documents": len(texts), "corpus_refused": refused,
               "corpus_heldout_dropped": corpus_heldout,
               "max_questions": max_questions,
               "split": _split_text(evals, finite, parsed, eval_fraction, seed)}
    return TrainingData(stream=mix(streams, seed), heldout=heldout, corpus=texts, calibration=calibration,
                        summary=summary)


def item_stream(data: TrainingData, pretrain_steps: int, batch_size: int, seed: int,
                piece_chars: int | None = None) -> Iterator[ContextQA]:
    """The items training reads, in order: ``pretrain_steps`` batches of corpus documents (the self-supervised
    steps; the items' own documents when there is no corpus), then the data's stream. With ``piece_chars`` the
    corpus is read as pieces of at most that many characters (``corpus_pieces``): a book-length text read whole,
    with gradients through every chunk, would make one step take hours."""
    if not data.corpus or pretrain_steps == 0:
        return data.stream
    texts = corpus_pieces(data.corpus, piece_chars) if piece_chars else data.corpus
    corpus = cycle_shuffled([ContextQA([text], []) for text in texts], seed)
    return itertools.chain(itertools.islice(corpus, pretrain_steps * batch_size), data.stream)


def corpus_pieces(texts: list[str], max_chars: int) -> list[str]:
    """Every text cut into consecutive pieces of at most ``max_chars`` characters, at line breaks where it can and
    else at spaces (a run of more than ``max_chars`` characters without either is cut where it must); together
    the pieces hold every word of the texts."""
    pieces: list[str] = []
    for text in texts:
        current = ""
        for line in text.splitlines():
            words, i = line.split(" "), 0
            while i < len(words):
                part, i = words[i], i + 1
                while i < len(words) and len(part) + 1 + len(words[i]) <= max_chars:
                    part, i = part + " " + words[i], i + 1
                for start in range(0, max(len(part), 1), max_chars):
                    bit = part[start:start + max_chars]
                    if current and len(current) + 1 + len(bit) > max_chars:
                        pieces.append(current)
                        current = ""
                    current = f"{current}\n{bit}" if current else bit
        if current.strip():
            pieces.append(current)
    return [p for p in pieces if p.strip()]


def _split_text(evals: list[DataSpec], finite: list, parsed: list[DataSpec], eval_fraction: float,
                seed: int) -> str:
    """How the held-out items were chosen, in words (saved in the summary and logged)."""
    if evals:
        return "held-out items are those of --eval-data; training items sharing a document with them are dropped"
    said = []
    if finite:
        said.append(f"by document: {eval_fraction:.0%} of each dataset's documents held out (seed {seed}); items "
                    "mixing held-out and training documents are dropped")
    if any(s.kind == WORLD for s in parsed):
        said.append("world: the benchmark world's training entities held out, training on fresh worlds' (test "
                    "entities never used)")
    return "; ".join(said)


def _spread(items: list[ContextQA], n: int) -> list[ContextQA]:
    """At most ``n`` items, spread evenly over the list."""
    return items if len(items) <= n else [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)] if n > 1 \
        else items[:1]


def read_corpus(paths: list[str]) -> tuple[list[str], list[str]]:
    """The texts of ``--corpus`` paths (text files, directories, JSONL with ``text``), read by memkit's own
    bounded, validating reader, and one line per input it refused; nothing usable is a ``ConfigError``."""
    if not paths:
        return [], []
    from memkit.errors import InputError
    from memkit.sources import iter_sources

    texts, refused = [], []
    for item in iter_sources(paths):
        if isinstance(item, InputError):
            refused.append(str(item))
        else:
            texts.append(item.text)
    if not texts:
        raise ConfigError(f"--corpus: nothing readable ({refused[0] if refused else 'no documents'})")
    return texts, refused
