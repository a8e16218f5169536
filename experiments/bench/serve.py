"""``memkit serve`` under load, on loopback, against one ``memkit ask`` process per question.

For every method (``--methods rag,adapter``) a fresh temporary store is made (``memkit init``, on ``--model``
when given) and filled with the first ``--n-docs`` documents of the workload through a first server run. The
workload (``--benchmark``) is the synthetic world (seed ``--seed``, the default), or a dataset read from
``--data``, such as memkit's English set: its documents are stored (all of them when ``--n-docs`` exceeds
their count; the JSON's ``workload`` says so), its questions whose gold documents are stored are asked, and the
fresh documents of step 4 are its unstored documents, then marked copies of its documents (each text with a
line ``[memkit bench copy k]`` prepended; the rule is recorded in ``workload.fresh``). Then:

1. the baseline: ``memkit ask`` as one process per question, ``--baseline-questions`` of them in sequence
   (no server running): mean wall seconds per question and its throughput, 1 / mean;
2. a second server is spawned: seconds from spawn to its "memkit serving" line and to a first answer (with
   ``--cold-start``, first a server whose model cache is an empty folder, so a GGUF model is converted again:
   ``startup_cold``);
3. closed-loop load, for each N of ``--clients``: N asyncio clients, one connection each, each sending the next
   question (cycling over the workload's questions about the stored documents) as soon as it has its answer;
   after ``--warmup`` seconds, the answers completed in the next ``--duration`` seconds give throughput
   (answers/s), p50/p99 latency and the mean ``batch_size`` the server reports;
4. ingest: ``--ingest-docs`` fresh documents ingested alone (a job, followed at ``/jobs/{id}``), then as many
   other fresh documents while N = ``--ingest-clients`` clients ask: the asks' throughput and p99 during the
   ingest, and the job's documents/s during the load, each against its own number alone.

Targets: throughput at 16 clients >= 20x the baseline's; p99 at 16 clients <= 5x p50 at 1 client. The client
runs on the same machine as the server (loopback), so on a small machine they share its cores.

    python -m experiments.bench.serve --methods rag,adapter --clients 1,4,16,64 --duration 20 --out serve.json
    python -m experiments.bench.serve --quick --methods rag            # a smoke run of ~30 s
    python -m experiments.bench.serve --benchmark english --data experiments/data/english --model gemma-3-270m \
        --methods rag --clients 1,4,16 --out serve_english.json

Owns: the benchmark's command line, its steps for one method (``run_method``) and for a whole run, and the
JSON result. Its parts: ``serve_world`` (the workload, world or dataset, and the choice between them),
``serve_process`` (spawning and stopping the server; the ``memkit ask`` baseline), ``serve_load`` (the HTTP
clients, the load generator, following ingest jobs), ``serve_report`` (the targets and the markdown table),
``serve_common`` (the error and the log line); their names stay importable from here. Knows the CLI and the
HTTP API from outside (subprocesses and httpx), not their code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from experiments.bench.serve_common import COLLECTION, REPO, BenchError, log
from experiments.bench.serve_load import (
    UNFINISHED,
    Load,
    Sample,
    answer_consistency,
    first_answer,
    http_client,
    ingest_job,
    ingest_under_load,
    load_level,
)
from experiments.bench.serve_process import LISTENING, PROBLEM, ServerProcess, baseline, child_env, cli, run_cli
from experiments.bench.serve_report import TARGET_CLIENTS, TARGET_SPEEDUP, TARGET_TAIL, fmt, markdown, ratio, targets
from experiments.bench.serve_world import Workload, choose_workload, world_workload

__all__ = [  # every name this module held before its parts moved to serve_*.py
    "COLLECTION", "DEFAULTS", "LISTENING", "PROBLEM", "QUICK", "REPO", "TARGET_CLIENTS", "TARGET_SPEEDUP",
    "TARGET_TAIL", "UNFINISHED", "BenchError", "Load", "Sample", "ServerProcess", "Workload", "answer_consistency",
    "baseline", "child_env", "cli", "first_answer", "fmt", "http_client", "ingest_job", "ingest_under_load",
    "load_level", "log", "machine", "main", "markdown", "parse_args", "ratio", "run", "run_cli", "run_method",
    "targets", "world_workload",
]

QUICK = {"n_docs": 20, "ingest_docs": 16, "duration": 1.0, "warmup": 0.5, "clients": "1,4",
         "baseline_questions": 1}
DEFAULTS = {"n_docs": 200, "ingest_docs": 400, "duration": 20.0, "warmup": 3.0, "clients": "1,4,16,64",
            "baseline_questions": 5}


async def run_method(method: str, work: Workload, args: argparse.Namespace, clients: list[int],
                     target: int) -> dict:
    out: dict[str, Any] = {"method": method}
    tmp = Path(tempfile.mkdtemp(prefix=f"memkit-serve-bench-{method}-"))
    store = tmp / "store"
    server: ServerProcess | None = None
    try:
        t = time.perf_counter()
        model = ["--model", args.model] if args.model else []
        run_cli(cli(store, args.device, "init", "--method", method, *model, *args.init_arg), "memkit init", 600,
                args.threads)
        out["init_s"] = round(time.perf_counter() - t, 3)
        log(f"{method}: store made in {out['init_s']} s at {store}")

        server = ServerProcess(store, args.device, args.server_arg, args.threads).start()
        await asyncio.to_thread(server.wait_listening, args.start_timeout)
        job = await ingest_job(server.url, work.stored, timeout=args.ingest_timeout, progress=True)
        job.pop("_t_submit"), job.pop("_t_end")
        server.stop()
        out["initial_ingest"] = job
        out["initial_server"] = server.report()
        server = None
        if job["status"] != "done" or not job["added"]:
            raise BenchError(f"the initial ingest ended {job['status']} with {job['added']} added: {job['error']}")
        log(f"{method}: {job['added']} documents stored ({job['documents_per_second']} docs/s)")

        if args.baseline_questions > 0:
            log(f"{method}: baseline, {args.baseline_questions} x memkit ask")
            out["baseline"] = await asyncio.to_thread(baseline, store, args.device, work.questions,
                                                      args.baseline_questions, args.request_timeout + 600,
                                                      args.threads)
            log(f"{method}: baseline {out['baseline']['mean_s']} s per question")

        if args.cold_start:
            cold = Path(tempfile.mkdtemp(prefix="memkit-serve-bench-cache-", dir=tmp))
            server = ServerProcess(store, args.device, args.server_arg, args.threads,
                                   env={"MEMKIT_CACHE_DIR": str(cold)}).start()
            out["startup_cold"] = await first_answer(server, work.questions[0]["question"], args.start_timeout)
            server.stop()
            server = None
            log(f"{method}: first answer {out['startup_cold']['first_answer_s']} s after spawn with an empty "
                f"model cache")
        server = ServerProcess(store, args.device, args.server_arg, args.threads).start()
        out["startup"] = await first_answer(server, work.questions[0]["question"], args.start_timeout)
        log(f"{method}: first answer {out['startup']['first_answer_s']} s after spawn "
            f"(listening at {out['startup']['listening_s']} s)")

        levels, loads = [], []
        for n in clients:
            level, load = await load_level(server.url, work.questions, n, args.warmup, args.duration,
                                           args.request_timeout)
            levels.append(level)
            loads.append(load)
            log(f"{method}: {n:>3} clients: {level['throughput']} answers/s, p50 {level['p50_ms']} ms, "
                f"p99 {level['p99_ms']} ms, batch {level['mean_batch_size']}, errors {level['errors_total']}")
        out["load"] = levels
        out["answer_consistency"] = answer_consistency(loads)
        del loads

        alone = await ingest_job(server.url, work.ingest_alone, timeout=args.ingest_timeout, progress=True)
        alone.pop("_t_submit"), alone.pop("_t_end")
        log(f"{method}: ingest alone {alone['documents_per_second']} docs/s ({alone['status']})")
        level_alone = next((lv for lv in levels if lv["clients"] == target), None)
        if level_alone is None:
            level_alone, _ = await load_level(server.url, work.questions, target, args.warmup, args.duration,
                                              args.request_timeout)
        asks, loaded = await ingest_under_load(server.url, work.questions, target, work.ingest_loaded,
                                               args.warmup, args.ingest_timeout, args.request_timeout)
        log(f"{method}: ingest under {target}-client load {loaded['documents_per_second']} docs/s; asks "
            f"{asks['throughput']} answers/s, p99 {asks['p99_ms']} ms")
        out["ingest"] = {
            "clients": target, "alone": alone, "under_load": loaded, "asks_during_ingest": asks,
            "asks_alone": {k: level_alone.get(k) for k in ("clients", "throughput", "p50_ms", "p99_ms")},
            "ingest_rate_ratio": ratio(loaded["documents_per_second"], alone["documents_per_second"]),
            "ask_throughput_ratio": ratio(asks["throughput"], level_alone["throughput"]),
            "ask_p99_ratio": ratio(asks["p99_ms"], level_alone["p99_ms"]),
        }
        async with http_client(60) as http:
            r = await http.get(f"{server.url}/stats")
            out["server_stats"] = r.json() if r.status_code == 200 else {"error": f"HTTP {r.status_code}"}
        out["targets"] = targets(out, target)
    except Exception as exc:  # noqa: BLE001 - the partial result is kept, with what went wrong
        out["error"] = f"{type(exc).__name__}: {exc}"
        log(f"{method} failed: {out['error']}")
    finally:
        if server is not None:
            server.stop()
            out["server"] = server.report()
        if args.keep:
            out["store"] = str(store)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.bench.serve", description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", default="rag,adapter", help="comma-separated memkit init methods")
    p.add_argument("--benchmark", default="world", help="world, or a dataset read with --data (e.g. english)")
    p.add_argument("--data", default=None, help="the dataset's local file or directory (required unless world)")
    p.add_argument("--model", default=None, help="the model of the stores, passed to memkit init --model (a "
                                                 "reference name such as gemma-3-270m, a directory or a hub id; "
                                                 "default: memkit init's)")
    p.add_argument("--seed", type=int, default=0, help="the synthetic world's seed (documents, questions, order); "
                                                       "a dataset's question order")
    p.add_argument("--n-docs", type=int, default=None, help=f"documents stored first (default {DEFAULTS['n_docs']})")
    p.add_argument("--clients", default=None, help=f"client counts, comma-separated (default {DEFAULTS['clients']})")
    p.add_argument("--duration", type=float, default=None,
                   help=f"measured seconds per client count (default {DEFAULTS['duration']:g})")
    p.add_argument("--warmup", type=float, default=None,
                   help=f"seconds of load before measuring (default {DEFAULTS['warmup']:g})")
    p.add_argument("--baseline-questions", type=int, default=None,
                   help=f"memkit ask processes, in sequence (default {DEFAULTS['baseline_questions']})")
    p.add_argument("--ingest-docs", type=int, default=None,
                   help=f"fresh documents per ingest measurement, alone and under load (default "
                        f"{DEFAULTS['ingest_docs']})")
    p.add_argument("--ingest-clients", type=int, default=None,
                   help=f"clients asking during the ingest, and the level of the targets (default {TARGET_CLIENTS} "
                        f"when in --clients, else the largest)")
    p.add_argument("--questions", type=int, default=1000, help="most distinct questions cycled over")
    p.add_argument("--device", default="auto", help="memkit --device for the server and the baseline")
    p.add_argument("--threads", type=int, default=None,
                   help="OMP_NUM_THREADS (torch's intra-op threads) of the server and the memkit ask processes "
                        "(default: inherited). On a small or shared machine, 1 avoids threads spinning against "
                        "the load generator and other processes")
    p.add_argument("--init-arg", action="append", default=[], help="extra argument to memkit init (repeatable), "
                                                                   "e.g. --init-arg=-o --init-arg=top_k=2")
    p.add_argument("--server-arg", action="append", default=[], help="extra argument to memkit serve "
                                                                     "(repeatable), e.g. --server-arg=--max-batch=64")
    p.add_argument("--cold-start", action="store_true",
                   help="also time a server started with an empty model cache (MEMKIT_CACHE_DIR a fresh folder: a "
                        "GGUF model is converted again) before the usual, cached start")
    p.add_argument("--start-timeout", type=float, default=300.0, help="seconds for a server to answer first")
    p.add_argument("--request-timeout", type=float, default=120.0, help="seconds per HTTP request")
    p.add_argument("--ingest-timeout", type=float, default=1800.0, help="seconds per ingest job")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: " + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in QUICK.items()))
    p.add_argument("--keep", action="store_true", help="keep the temporary stores (their paths are in the JSON)")
    p.add_argument("--out", default=None, help="write the JSON here (default: print it after the table)")
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def machine() -> dict:
    info = {"cpu_count": os.cpu_count(), "platform": platform.platform(), "machine": platform.machine(),
            "processor": platform.processor() or None, "python": platform.python_version()}
    try:
        info["sched_cpus"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        info["torch_threads"] = torch.get_num_threads()
    except Exception:  # noqa: BLE001 - the record is best effort
        pass
    return info


def run(args: argparse.Namespace, argv: list[str]) -> dict:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    clients = sorted({int(c) for c in str(args.clients).split(",") if c.strip()})
    if not methods or not clients or min(clients) < 1:
        raise BenchError("--methods and --clients need at least one method and one client count >= 1")
    if args.n_docs < 1 or args.ingest_docs < 1 or args.duration <= 0 or args.warmup < 0:
        raise BenchError("--n-docs and --ingest-docs must be >= 1, --duration > 0, --warmup >= 0")
    if args.model and any(a.split("=")[0] == "--model" for a in args.init_arg):
        raise BenchError("--model and --init-arg --model both name the model; keep one")
    target = args.ingest_clients or (TARGET_CLIENTS if TARGET_CLIENTS in clients else max(clients))
    work = choose_workload(args.benchmark, args.data, args.seed, args.n_docs, args.ingest_docs, args.questions)
    started = time.time()
    result: dict[str, Any] = {
        "benchmark": "serve", "command": [sys.executable, "-m", "experiments.bench.serve", *argv],
        "seed": args.seed, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "machine": machine(),
        "config": {"methods": methods, "n_docs": args.n_docs, "clients": clients, "duration_s": args.duration,
                   "warmup_s": args.warmup, "baseline_questions": args.baseline_questions,
                   "ingest_docs": args.ingest_docs, "target_clients": target, "questions": len(work.questions),
                   "device": args.device, "threads": args.threads,
                   "inherited_omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                   "init_args": args.init_arg, "server_args": args.server_arg,
                   "quick": args.quick, "loopback": True,
                   "note": "the load generator runs on the same machine as the server and shares its CPUs"},
        "methods": {},
    }
    if args.model:
        result["config"]["model"] = args.model
    if work.about:
        result["workload"] = work.about
    for method in methods:
        log(f"=== {method} ===")
        result["methods"][method] = asyncio.run(run_method(method, work, args, clients, target))
    result["seconds"] = round(time.time() - started, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        result = run(args, argv)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(markdown(result))
    text = json.dumps(result, indent=2, ensure_ascii=False)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
        log(f"wrote {args.out}")
    else:
        print()
        print(text)
    for name, m in result["methods"].items():
        for key in ("speedup", "tail"):
            t = m.get("targets", {}).get(key)
            if t:
                print(f"{name} {key}: {fmt(t['value'], 2)} ({t['what']} {t['target']:g}): "
                      f"{'PASS' if t['pass'] else 'MISS'}", file=sys.stderr)
    return 1 if any("error" in m for m in result["methods"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
