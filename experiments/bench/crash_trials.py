"""Crash trials: ``memkit ingest`` killed with SIGKILL at a random moment, then the store checked as a user would.

Each trial makes a fresh store of ``--method`` on the packaged world LM, starts ``memkit ingest`` on a JSONL
stream of ``--docs`` world documents, kills it (``kill -9``) after a random delay (seeded) once it has begun
adding documents, and then checks: every document ``ls`` lists has exactly its input's text and at least one
memory (none half-written), ``doctor --skip-model`` exits 0 (a stale index file is a note, not a problem) or
reports only leftovers that ``doctor --repair`` deletes, after which it says healthy, and a second ingest of
the same stream adds exactly the documents the first one had not.

    python -m experiments.bench.crash_trials --method rag --trials 10 --seed 0
    python -m experiments.bench.crash_trials --method adapter --trials 10 --seed 1

Owns: the trials and their command line. Knows the CLI only as a program to run.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def memkit(store: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", "--store", str(store), *args], capture_output=True,
                          text=True, timeout=timeout)


def world_stream(path: Path, n: int, seed: int) -> dict[str, str]:
    """``n`` test documents of the world (seed ``seed``) as JSONL; returns id -> text."""
    from experiments.world.entities import WorldConfig
    from experiments.world.export import export_split

    out = path.parent / "world"
    export_split(WorldConfig(seed=seed), "test", out)
    rows = [json.loads(line) for line in (out / "documents.jsonl").read_text().splitlines()][:n]
    path.write_text("".join(json.dumps({"id": r["id"], "text": r["text"]}) + "\n" for r in rows))
    return {r["id"]: r["text"] for r in rows}


def trial(work: Path, stream: Path, texts: dict[str, str], method: str, delay: float) -> dict:
    store = work / "store"
    shutil.rmtree(store, ignore_errors=True)
    made = memkit(store, "init", "--method", method)
    if made.returncode != 0:
        return {"error": made.stderr.strip()}
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "--store", str(store), "ingest", str(stream)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    finished = proc.poll() is not None
    proc.kill()
    proc.wait()
    from storage import Store

    with Store.open(store) as reader:  # what a reader sees: each document whole, with its memories
        listed = reader.list_documents()
        whole = all(d.text == texts.get(d.external_id) and d.n_memories > 0 for d in listed)
    doctor = memkit(store, "doctor", "--skip-model")
    problems = [line for line in doctor.stdout.splitlines() if line.startswith("problem:")]
    notes = [line for line in doctor.stdout.splitlines() if line.startswith("note:")]
    repaired = memkit(store, "doctor", "--skip-model", "--repair") if doctor.returncode else None
    again = json.loads(memkit(store, "ingest", str(stream), "--json").stdout or "{}")
    final = memkit(store, "doctor", "--skip-model")
    return {"delay_s": round(delay, 2), "finished_before_kill": finished, "kept": len(listed), "all_whole": whole,
            "doctor_exit": doctor.returncode, "problems": problems, "notes": notes,
            "repair_exit": None if repaired is None else repaired.returncode,
            "second_ingest_added": again.get("added"), "second_ingest_duplicates": again.get("duplicates"),
            "completes_stream": again.get("added", 0) + len(listed) == len(texts),
            "final_doctor_exit": final.returncode}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.bench.crash_trials", description=__doc__.split("\n\n")[0])
    p.add_argument("--method", default="rag")
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--docs", type=int, default=3000)
    p.add_argument("--min-delay", type=float, default=3.5, help="seconds after start (model loading included)")
    p.add_argument("--max-delay", type=float, default=9.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the result here as JSON")
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="memkit-crash-"))
    try:
        stream = work / "stream.jsonl"
        texts = world_stream(stream, args.docs, args.seed)
        runs = []
        for i in range(args.trials):
            runs.append(trial(work, stream, texts, args.method, rng.uniform(args.min_delay, args.max_delay)))
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
        summary = {
            "method": args.method, "trials": len(runs), "seed": args.seed, "docs_in_stream": len(texts),
            "killed_mid_ingest": sum(not r.get("finished_before_kill", True) for r in runs),
            "all_whole": sum(r.get("all_whole", False) for r in runs),
            "doctor_healthy_at_once": sum(r.get("doctor_exit") == 0 for r in runs),
            "doctor_notes": sum(bool(r.get("notes")) for r in runs),
            "healthy_after_repair": sum(r.get("doctor_exit") == 0 or r.get("repair_exit") == 0 for r in runs),
            "second_ingest_completes": sum(r.get("completes_stream", False) for r in runs),
            "final_doctor_healthy": sum(r.get("final_doctor_exit") == 0 for r in runs),
            "runs": runs,
        }
        text = json.dumps(summary, indent=2)
        print(text)
        if args.json:
            Path(args.json).write_text(text + "\n")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
