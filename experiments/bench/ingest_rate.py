"""End-to-end ingest rate of ``memkit ingest`` per method, against one plain forward pass of the LM.

For ``--docs`` documents written as a JSONL stream: test documents of the world (``--seed``, the default
``--benchmark world``), or the documents of a dataset read from ``--data`` (e.g. memkit's English set). A
dataset with fewer documents than ``--docs`` is repeated, not capped, so that the rate is measured over as many
documents: after its own documents come marked copies of them (each text with a line ``[memkit bench copy k]``
prepended, so the store's duplicate check takes each as new; ``workload_docs.COPY_RULE``), and the JSON's
``documents`` records how many of each and the rule.

* ``forward``: the store's model's plain forward pass (``--model``, the same model ``memkit init --model`` gets;
  default the packaged world LM; no gradients, last hidden states only) over the same documents in batches of
  ``--batch`` (what the ingest's batches read), in this process, on the CPU; the physical limit of a method
  that reads each document once;
* per method of ``--methods``: a fresh store (``memkit init --method M [--model NAME]``), then ``memkit ingest
  STREAM --json`` in a subprocess; ``docs_per_s`` is documents over the ingest loop's own seconds (the
  report's ``seconds``: reading, encoding, writing; the model's loading is left out and given as ``wall_s``
  minus it), and ``vs_forward`` its ratio to the forward pass.

    python -m experiments.bench.ingest_rate --methods rag,adapter --docs 1000 --seed 0
    python -m experiments.bench.ingest_rate --benchmark english --data experiments/data/english \
        --model gemma-3-270m --methods rag,adapter --docs 1000 --out ingest_rate_english.json

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
from experiments.bench.workload_docs import COPY_RULE, WORLD, document_json, load_dataset, marked_copies
from memkit.errors import ConfigError


def world_stream(path: Path, n: int, seed: int) -> list[str]:
    """``n`` test documents of the world (seed ``seed``) as a JSONL stream at ``path``; returns their texts."""
    texts = list(crash_trials.world_stream(path, n, seed).values())
    if len(texts) < n:
        raise SystemExit(f"the world of seed {seed} has {len(texts)} test documents, fewer than --docs {n}")
    return texts


def dataset_stream(path: Path, n: int, benchmark: str, data: str | None, seed: int = 0) -> tuple[list[str], dict]:
    """``n`` documents of the dataset ``benchmark`` (read from ``data``) as a JSONL stream at ``path``: its own
    documents, then marked copies of them (``COPY_RULE``) until there are ``n``; returns their texts and what the
    JSON records of them. A ``ConfigError`` names --data when it is missing."""
    docs = load_dataset(benchmark, data, seed).documents
    copies = marked_copies(docs, n - len(docs))
    chosen = docs[:n] + copies
    path.write_text("".join(json.dumps(document_json(d), ensure_ascii=False) + "\n" for d in chosen),
                    encoding="utf-8")
    about = {"benchmark": benchmark, "data": str(data), "dataset_documents": len(docs),
             "documents": len(chosen), "marked_copies": len(copies)}
    if copies:
        about["rule"] = "the dataset's documents, then " + COPY_RULE
    return [d.text for d in chosen], about


def forward_rate(texts: list[str], batch: int, repeats: int = 2, model: str | None = None) -> dict:
    """Documents/s of the plain forward pass of ``model`` (default the packaged world LM) over ``texts`` (best of
    ``repeats``), with the name the model loaded under."""
    import torch

    from memkit.defaults import default_model
    from memkit.lm import FrozenLM

    lm = FrozenLM.load(model or default_model(), device="cpu")
    best = float("inf")
    tokens = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        with torch.no_grad():
            for i in range(0, len(texts), batch):
                states, mask = lm.hidden_states(texts[i:i + batch])
                tokens += int(mask.sum())
        best = min(best, time.perf_counter() - t0)
    return {"model": lm.name, "docs_per_s": round(len(texts) / best, 1), "seconds": round(best, 3),
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
    p.add_argument("--seed", type=int, default=0, help="the synthetic world's seed")
    p.add_argument("--benchmark", default=WORLD, help="world, or a dataset read with --data (e.g. english)")
    p.add_argument("--data", default=None, help="the dataset's local file or directory (required unless world)")
    p.add_argument("--model", default=None, help="the model of the stores (memkit init --model) and of the forward "
                                                 "pass, e.g. gemma-3-270m (default: the packaged world LM)")
    p.add_argument("--init-arg", action="append", default=[], help="extra argument for `memkit init` (repeat)")
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="memkit-ingest-") as tmp:
        work = Path(tmp)
        stream = work / "stream.jsonl"
        results: dict = {"config": {k: v for k, v in vars(args).items() if k != "out"}}
        if args.benchmark == WORLD:
            texts = world_stream(stream, args.docs, args.seed)
        else:
            try:
                texts, results["documents"] = dataset_stream(stream, args.docs, args.benchmark, args.data, args.seed)
            except ConfigError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
        results["forward"] = forward_rate(texts, args.batch, model=args.model)
        results["methods"] = {}
        print(json.dumps({"forward": results["forward"]}), flush=True)
        extra = (["--model", args.model] if args.model else []) + args.init_arg
        for method in args.methods.split(","):
            row = ingest_rate(work, method, stream, len(texts), extra)
            if "docs_per_s" in row:
                row["vs_forward"] = round(row["docs_per_s"] / results["forward"]["docs_per_s"], 3)
            results["methods"][method] = row
            print(json.dumps({method: row}), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
