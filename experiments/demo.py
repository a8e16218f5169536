"""The main job on the embedded default, run by ``make demo``: init a store, ingest, ask, show sources.

The documents are a few test-split entities of the synthetic world (experiments/data/demo, written by
``python -m experiments.world.demo_set``); the questions come with their gold answers.

Owns: the demo script. It drives the real ``memkit`` command in subprocesses, printing each command as a user
would type it, so the demo exercises exactly what a user runs. It uses the packaged world LM when this
memkit carries one; otherwise it says so plainly and builds a tiny random placeholder model, whose answers
are not meaningful (the documents it cites are the ones really retrieved).
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

QUESTIONS = [json.loads(line) for line in (DATA / "questions.jsonl").read_text().splitlines() if line.strip()]


def run(args: list[str], stdin: str | None = None) -> None:
    cmd = [sys.executable, "-m", "cli.main", "--store", str(STORE), *args]
    shown = "memkit --store " + str(STORE) + " " + " ".join(shlex.quote(a) for a in args)
    print(f"\n$ {('echo ... | ' if stdin else '')}{shown}", flush=True)
    done = subprocess.run(cmd, input=stdin, text=True)
    if done.returncode != 0:
        sys.exit(f"demo step failed with exit code {done.returncode}: {shown}")


def pick_model() -> str:
    from memkit.defaults import PACKAGED_MODEL

    if (PACKAGED_MODEL / "config.json").is_file():
        return str(PACKAGED_MODEL)
    from experiments.tiny_model import build_tiny_model

    print("NOTE: this memkit carries no trained world LM yet, so the demo uses a tiny RANDOM placeholder\n"
          "model built from a config. Its answers are NOT meaningful. Everything else is real: the store,\n"
          "the ingest, the index, and the sources listed are the documents actually retrieved (with a\n"
          "random model, which documents rank first is not meaningful either).")
    return str(build_tiny_model("llama", WORK / "placeholder-llama", seed=0, max_positions=512))


def main() -> None:
    if STORE.exists():
        shutil.rmtree(STORE)
    WORK.mkdir(exist_ok=True)
    model = pick_model()
    run(["init", "--model", model, "--method", "rag", "-o", "chunk_tokens=128", "-o", "top_k=3"])
    run(["ingest", str(DATA / "notes")])
    run(["ingest", str(DATA / "stream.jsonl")])
    run(["ingest", "-", "--stream", "notes"], stdin=(DATA / "stdin.txt").read_text())
    run(["ls"])
    for item in QUESTIONS:
        run(["ask", item["question"]])
        print(f"(gold answer: {item['answers'][0]}; question type: {item['type']})")
    run(["stats"])
    print(f"\nThe store is in {STORE}; try: memkit --store {STORE} ask \"{QUESTIONS[0]['question']}\"")


if __name__ == "__main__":
    main()
