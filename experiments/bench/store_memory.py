"""Peak memory and time of the memkit command on large inputs and large stores, each command in its own process.

Two measurements, each run through the real ``memkit`` command line in a subprocess whose peak resident memory
(the kernel's ``ru_maxrss`` of that child, from ``os.wait4``) and wall time are recorded:

* ``big-doc``: one plain-text document of ``--doc-mb`` MB (deterministic pseudo-words, ``--seed``) ingested into
  a fresh store of ``--method`` on the packaged world LM, with any extra ``--ingest-arg`` (e.g.
  ``--ingest-arg=--max-doc-bytes=64MiB``). A watchdog samples the child's resident memory and kills it past
  ``--cap-gb`` or ``--timeout`` seconds, so a runaway is measured, not suffered.
* ``large-store``: a store of ``--docs`` documents with ``--chunks`` keyed records each (random unit keys of
  ``--dim`` floats: the shape a rag store of long documents has), written through ``storage.Store`` directly;
  then ``ls``, ``show``, ``stats`` and ``rm`` are each timed and measured.

    python -m experiments.bench.store_memory big-doc --doc-mb 50 --cap-gb 12 --timeout 180
    python -m experiments.bench.store_memory large-store --docs 1000 --chunks 100 --dim 4096

Owns: the two measurements and their command line. Knows the CLI only as a program to run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_measured(args: list[str], *, cap_kb: int | None = None, timeout: float | None = None,
                 stdin=None) -> dict:
    """Runs ``args``; returns its exit status, wall seconds, peak RSS (MB: the child's ``ru_maxrss``, or the
    watchdog's highest sample if higher), whether the watchdog killed it and why, and the last lines of its
    stderr. The calling process should be small: Linux carries a peak across ``exec``."""
    start = time.monotonic()
    proc = subprocess.Popen(args, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    killed: list[str] = []
    seen = [0]

    def watch() -> None:
        while proc.poll() is None:
            rss = _rss_kb(proc.pid)
            seen[0] = max(seen[0], rss)
            if cap_kb is not None and rss > cap_kb:
                killed.append(f"resident memory passed {cap_kb / 2**20:.1f} GB")
                proc.kill()
                return
            if timeout is not None and time.monotonic() - start > timeout:
                killed.append(f"still running after {timeout:.0f} s")
                proc.kill()
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out_chunks: list[bytes] = []
    err_chunks: list[bytes] = []
    readers = [threading.Thread(target=lambda: out_chunks.append(proc.stdout.read()), daemon=True),
               threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()), daemon=True)]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    for r in readers:
        r.join()
    watcher.join(timeout=1)
    seconds = time.monotonic() - start
    stderr = b"".join(err_chunks).decode("utf-8", "replace").strip().splitlines()
    return {"cmd": " ".join(args[1:]), "exit": proc.returncode, "seconds": round(seconds, 2),
            "peak_mb": round(max(usage.ru_maxrss, seen[0]) / 1024, 1), "killed": killed[0] if killed else None,
            "stderr_tail": stderr[-3:]}


def memkit_cmd(store: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", "--store", str(store), *args]


def write_big_text(path: Path, megabytes: float, seed: int) -> None:
    """``megabytes`` MB of deterministic pseudo-English: sentences of syllable words, a paragraph every ~80."""
    rng = np.random.default_rng(seed)
    syllables = ["ka", "lo", "mer", "tin", "sa", "ve", "dor", "ri", "an", "pel", "ost", "uin", "bre", "ha"]
    words = ["".join(rng.choice(syllables, size=rng.integers(1, 4))) for _ in range(4000)]
    target = int(megabytes * 1_000_000)
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            picks = rng.integers(0, len(words), size=(80, 12))
            block = "\n\n".join(" ".join(words[i] for i in row).capitalize() + "." for row in picks) + "\n\n"
            f.write(block)
            written += len(block)


def big_doc(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="memkit-bigdoc-"))
    try:
        text = work / "big.txt"
        write_big_text(text, args.doc_mb, args.seed)
        store = work / "store"
        init = run_measured(memkit_cmd(store, "init", "--method", args.method))
        if init["exit"] != 0:
            return {"error": "init failed", "init": init}
        cap_kb = int(args.cap_gb * 2**20)
        result = run_measured(memkit_cmd(store, "ingest", str(text), *args.ingest_arg), cap_kb=cap_kb,
                              timeout=args.timeout)
        sizes = {p.name: p.stat().st_size for p in store.rglob("*") if p.is_file() and p.suffix in (".db", ".faiss")}
        return {"measure": "big-doc", "doc_bytes": text.stat().st_size, "method": args.method,
                "seed": args.seed, "ingest": result, "store_file_bytes": sizes}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def build_large_store(store_dir: Path, docs: int, chunks: int, dim: int, seed: int) -> None:
    """Writes the synthetic store (run in its own process, so the measuring process stays small: Linux carries a
    process's peak resident memory across ``exec`` into the commands it starts)."""
    from storage import DocumentIn, RecordIn, Store

    rng = np.random.default_rng(seed)
    with Store.create(store_dir, model_id="synthetic", model_revision=None, model_fingerprint="synthetic",
                      method="rag", method_config={}, key_dim=dim) as store:
        for d in range(docs):
            keys = rng.standard_normal((chunks, dim)).astype(np.float32)
            keys /= np.linalg.norm(keys, axis=1, keepdims=True)
            text = f"synthetic document {d}: " + " ".join(f"w{d}x{i}" for i in range(chunks * 20))
            store.add_document(DocumentIn(text=text, source=f"doc{d}.txt"),
                               [RecordIn(kind="chunk", key=k, span=(0, 10)) for k in keys])


def large_store(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="memkit-largestore-"))
    try:
        store_dir = work / "store"
        t0 = time.monotonic()
        code = (f"from pathlib import Path; from experiments.bench.store_memory import build_large_store; "
                f"build_large_store(Path({str(store_dir)!r}), {args.docs}, {args.chunks}, {args.dim}, {args.seed})")
        subprocess.run([sys.executable, "-c", code], check=True)
        build_s = time.monotonic() - t0
        sizes = {p.name: p.stat().st_size for p in store_dir.rglob("*") if p.is_file() and p.suffix in (".db", ".faiss")}
        runs = [run_measured(memkit_cmd(store_dir, "ls", "--limit", "20"), timeout=args.timeout),
                run_measured(memkit_cmd(store_dir, "show", "1"), timeout=args.timeout),
                run_measured(memkit_cmd(store_dir, "stats"), timeout=args.timeout),
                run_measured(memkit_cmd(store_dir, "rm", "2"), timeout=args.timeout),
                run_measured(memkit_cmd(store_dir, "ls", "--limit", "20"), timeout=args.timeout)]
        return {"measure": "large-store", "docs": args.docs, "chunks": args.chunks, "dim": args.dim,
                "seed": args.seed, "build_seconds": round(build_s, 1), "store_file_bytes": sizes, "commands": runs}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.bench.store_memory", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="measure", required=True)
    b = sub.add_parser("big-doc", help="ingest one large text document into a fresh store")
    b.add_argument("--doc-mb", type=float, default=50.0)
    b.add_argument("--method", default="rag")
    b.add_argument("--ingest-arg", action="append", default=[], help="extra argument to memkit ingest")
    b.add_argument("--cap-gb", type=float, default=12.0, help="kill the ingest past this resident memory")
    b.add_argument("--timeout", type=float, default=600.0)
    b.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("large-store", help="time ls/show/stats/rm on a large synthetic store")
    s.add_argument("--docs", type=int, default=1000)
    s.add_argument("--chunks", type=int, default=100)
    s.add_argument("--dim", type=int, default=4096)
    s.add_argument("--timeout", type=float, default=600.0)
    s.add_argument("--seed", type=int, default=0)
    for q in (b, s):
        q.add_argument("--json", default=None, help="write the result here as JSON")
    args = p.parse_args(argv)
    result = big_doc(args) if args.measure == "big-doc" else large_store(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
