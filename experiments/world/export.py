"""Getting the world out: JSONL files ``memkit ingest`` reads, and the world as a benchmark.

Owns: the on-disk form of a split (``documents.jsonl``, ``questions.jsonl`` and ``world.json``, the config and
counts that rebuild it) and ``load_world_benchmark``, the world in the shape every benchmark takes.
Knows nothing of models or of memkit's engine.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from memkit.datasets.records import BenchQuestion, Benchmark, bench_document
from experiments.world.entities import WorldConfig, build_world
from experiments.world.names import SPLITS
from experiments.world.questions import questions
from experiments.world.render import documents

ALL = "all"


def _splits(split: str) -> list[str | None]:
    if split == ALL:
        return [None]
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS + (ALL,))} (--split)")
    return [split]


def _write_jsonl(path: Path, rows) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def export_split(config: WorldConfig, split: str, out_dir: str | Path) -> dict:
    """Write ``split`` (or ``all``) of the world built from ``config`` to ``out_dir``; returns the counts.

    documents.jsonl: one document a line (``id``, ``text``, ``timestamp``, ``source``, ``entity``, ``kind``,
    ``split``, ``template``), in timestamp order: ingest it as ``memkit ingest DIR/documents.jsonl``.
    questions.jsonl: one question a line (``id``, ``question``, ``answers``, ``type``, ``entity``,
    ``attribute``, ``doc_ids``, ``split``, ``template``, ``date``).
    world.json: the config and the counts, so the files can be rebuilt and checked.
    """
    (which,) = _splits(split)
    world = build_world(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    docs = documents(world, which)
    qs = questions(world, which)
    counts = {
        "documents": _write_jsonl(out / "documents.jsonl", (d.to_dict() for d in docs)),
        "questions": _write_jsonl(out / "questions.jsonl", (q.to_dict() for q in qs)),
        "documents_by_kind": dict(Counter(d.kind for d in docs)),
        "questions_by_type": dict(Counter(q.type for q in qs)),
    }
    meta = {"format": 1, "split": split, "config": config.to_dict(), "counts": counts}
    (out / "world.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return counts


def load_world_benchmark(config: WorldConfig | None = None, split: str = "test") -> Benchmark:
    """The world's ``split`` (or ``all``) as a ``Benchmark``: documents in timestamp order, every question."""
    config = config or WorldConfig()
    (which,) = _splits(split)
    world = build_world(config)
    docs = [bench_document(id=str(d.id), text=d.text, timestamp=d.timestamp, source=d.source,
                          meta={"entity": d.entity, "kind": d.kind, "split": d.split, "template": d.template})
            for d in documents(world, which)]
    qs = [BenchQuestion(id=q.id, question=q.question, answers=list(q.answers), doc_ids=[str(i) for i in q.doc_ids],
                        type=q.type, timestamp=q.date,
                        meta={"entity": q.entity, "attribute": q.attribute, "split": q.split,
                              "template": q.template})
          for q in questions(world, which)]
    return Benchmark(name=f"world-{split}", documents=docs, questions=qs,
                     meta={"config": config.to_dict(), "split": split})
