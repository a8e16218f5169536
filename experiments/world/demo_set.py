"""The small document set ``make demo`` ingests: a few test-split entities of the default world.

Owns: picking them (a person whose employer's document is included, one who moved, a few more; single-fact
questions on four of them, a current-value and a two-hop question that each need two documents), writing them as
the demo's inputs (text files for a directory, a JSONL stream, one document for stdin), and the demo questions
with their gold answers. Run ``python -m experiments.world.demo_set`` to rewrite experiments/data/demo.
Knows nothing of models or storage.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from experiments.world.entities import WorldConfig, build_world
from experiments.world.questions import questions
from experiments.world.render import documents

OUT = Path(__file__).resolve().parent.parent / "data" / "demo"


def pick(world):
    docs = {d.id: d for d in documents(world, "test")}
    qs = questions(world, "test")
    moved = next(q for q in qs if q.type == "current" and q.attribute == "home_city")
    hop = next(q for q in qs if q.type == "two_hop" and q.attribute == "hq_city" and q.entity != moved.entity
               and q.answers != moved.answers)
    others = [q for q in qs if q.type == "single" and q.entity not in (moved.entity, hop.entity)
              and q.attribute in ("occupation", "birth_city")][:2]
    own = [next(q for q in qs if q.type == "single" and q.entity == e and q.attribute == a)
           for e, a in ((moved.entity, "birth_city"), (hop.entity, "hobby"))]
    single = own + others
    chosen = [moved, hop, *single]
    needed = []
    for q in chosen:
        needed += [i for i in q.doc_ids if i not in needed]
    return [docs[i] for i in needed], chosen


def main() -> None:
    world = build_world(WorldConfig(seed=0))
    docs, chosen = pick(world)
    if OUT.exists():
        shutil.rmtree(OUT)
    (OUT / "notes").mkdir(parents=True)
    bios = [d for d in docs if d.kind == "bio"]
    stdin_doc, file_docs = bios[-1], bios[:-1]
    for d in file_docs:
        (OUT / "notes" / f"{d.id}.txt").write_text(d.text + "\n")
    with open(OUT / "stream.jsonl", "w") as fh:
        for d in docs:
            if d.kind != "bio":
                fh.write(json.dumps({"id": d.id, "timestamp": d.timestamp, "source": d.source, "text": d.text}) + "\n")
    (OUT / "stdin.txt").write_text(stdin_doc.text + "\n")
    with open(OUT / "questions.jsonl", "w") as fh:
        for q in chosen:
            fh.write(json.dumps({"question": q.question, "answers": q.answers, "type": q.type}) + "\n")
    print(f"wrote {len(docs)} documents and {len(chosen)} questions to {OUT}")


if __name__ == "__main__":
    main()
