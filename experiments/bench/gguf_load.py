"""How long a GGUF model takes to load: the first time (transformers converts the file, memkit caches the result)
against later loads (memkit reads its cached float32 directory), each in a fresh process.

    python -m experiments.bench.gguf_load --models gemma-3-270m,smollm2-135m-instruct [--repeats 2]

Every model is loaded ``1 + repeats`` times, each in its own Python process (imports included, as a user's
command pays them), against a cache folder made for the run and deleted after it; the first load converts,
the others read the cache. Prints one line per load and a JSON summary (``--json FILE``). Names are anything
``--model`` accepts (reference names, .gguf files).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_CHILD = """
import json, sys, time
start = time.perf_counter()
from memkit.lm import FrozenLM
lm = FrozenLM.load(sys.argv[1], device="cpu", dtype="float32")
print(json.dumps({"seconds": time.perf_counter() - start, "fingerprint": lm.fingerprint,
                  "parameters": sum(p.numel() for p in lm.model.parameters())}))
"""


def load_once(model: str, cache: Path) -> dict:
    env = {**os.environ, "MEMKIT_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", _CHILD, model], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise SystemExit(f"loading {model} failed: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="gemma-3-270m,smollm2-135m-instruct", help="comma-separated model names")
    ap.add_argument("--repeats", type=int, default=2, help="cached loads after the first (default 2)")
    ap.add_argument("--json", type=Path, default=None, help="write the summary here")
    args = ap.parse_args(argv)
    rows = []
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        cache = Path(tempfile.mkdtemp(prefix="memkit-gguf-bench-"))
        try:
            times = []
            for i in range(1 + args.repeats):
                got = load_once(model, cache)
                times.append(round(got["seconds"], 2))
                print(f"{model}: load {i + 1} ({'converts' if i == 0 else 'cached'}) {got['seconds']:.1f} s", flush=True)
            rows.append({"model": model, "first_s": times[0], "cached_s": times[1:], "fingerprint": got["fingerprint"],
                         "parameters": got["parameters"]})
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    summary = {"cpus": os.cpu_count(), "python": sys.version.split()[0], "models": rows}
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2), "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
