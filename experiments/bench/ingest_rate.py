"""End-to-end ingest rate of ``memkit ingest`` per method, against one plain forward pass of the LM.

For ``--docs`` test documents of the world (``--seed``), written as a JSONL stream:

* ``forward_docs_per_s``: the world LM's plain forward pass (no gradients, last hidden states only) over the
  same documents in batches of ``--batch`` (what the ingest's batches read), in this process; the physical
  limit of a method that reads each document once;
* per method of ``--methods``: a fresh store (``memkit init --method M``), then ``memkit ingest STREAM --json``
  in a subprocess; ``docs_per_s`` is documents over the ingest loop's own seconds (the report's ``seconds``:
  reading, encoding, writing; the model's loading is left out and given as ``wall_s`` minus it), and
  ``vs_forward`` its ratio to the forward pass.

    python -m experiments.bench.ingest_rate --methods rag,adapter --docs 1000 --seed 0

Owns: the measurement and its command line. Knows the CLI only as a program to run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from experiments.bench import crash_trials


def world_stream(path: Path, n: int, seed: int) -> list[str]:
    """``n`` test documents of the world (seed ``seed``) as a JSONL stream at ``path``; returns their texts."""
    texts = list(crash_trials.world_stream(path, n, seed).values())
    if len(texts) < n:
        raise SystemExit(f"the world of seed {seed} has {len(texts)} test documents, fewer than --docs {n}")
    return texts


def forward_rate(texts: list[str], batch: int, repeats: int = 2) -> dict:
    """Documents/s of the packaged world LM's plain forward pass over ``texts`` (best of ``repeats``)."""
    import torch

    from memkit.defaults import default_model
    from memkit.lm import FrozenLM

    lm = FrozenLM.load(default_model(), device="cpu")
    best = float("inf")
    tokens = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        with torch.no_grad():
            for i in range(0, len(texts), batch):
                states, mask = lm.hidden_states(texts[i:i + batch])
                tokens += int(mask.sum())
        best = min(best, time.perf_counter() - t0)
    return {"docs_per_s": round(len(texts) / best, 1), "seconds": round(best, 3),
            "tokens_per_doc": round(tokens / repeats / len(texts), 1)}


def ingest_rate(work: Path, method: str, stream: Path, n: int, extra: list[str]) -> dict:
    store = work / f"store-{method}"
    base = [sys.executable, "-m", "cli.main", "--store", str(store)]
    made = subprocess.run([*base, "init", "--method", method, *extra], capture_output=True, text=True)
    if made.returncode != 0:
        return {"error": made.stderr.strip()}
    t0 = time.perf_counter()
    run = subprocess.run([*base, "ingest", str(stream), "--json"], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if run.returncode != 0:
        return {"error": run.stderr.strip()[-2000:]}
    report = json.loads(run.stdout)
    seconds = float(report["seconds"])
    return {"added": report["added"], "seconds": round(seconds, 3), "docs_per_s": round(n / seconds, 1),
            "wall_s": round(wall, 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", default="rag,adapter")
    p.add_argument("--docs", type=int, default=1000)
    p.add_argument("--batch", type=int, default=8, help="documents per forward batch (the ingest's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init-arg", action="append", default=[], help="extra argument for `memkit init` (repeat)")
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="memkit-ingest-") as tmp:
        work = Path(tmp)
        stream = work / "stream.jsonl"
        texts = world_stream(stream, args.docs, args.seed)
        results = {"config": {k: v for k, v in vars(args).items() if k != "out"},
                   "forward": forward_rate(texts, args.batch), "methods": {}}
        print(json.dumps({"forward": results["forward"]}), flush=True)
        for method in args.methods.split(","):
            row = ingest_rate(work, method, stream, args.docs, args.init_arg)
            if "docs_per_s" in row:
                row["vs_forward"] = round(row["docs_per_s"] / results["forward"]["docs_per_s"], 3)
            results["methods"][method] = row
            print(json.dumps({method: row}), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
