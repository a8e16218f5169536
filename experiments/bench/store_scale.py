"""The store at scale: adding, searching, recall, memory and disk as a collection grows to 10K, 100K, 1M documents.

One process grows one store through ``storage.Store`` directly (keys and payloads given, as a method would
give them): each document has one keyed record with a ``--payload-bytes`` float16 payload and a short text.
Keys are synthetic (``--dim`` floats, unit length, drawn from a mixture of ``--clusters`` Gaussian clusters so
that neighbours exist, as in real embeddings; say so when quoting the numbers). At each size of ``--sizes``:

* ``add_docs_per_s``: documents/s added in that stretch, in batches of ``--batch`` (``Store.add_documents``; a
  store without it is driven one document at a time, which is how the numbers before the batched write path
  were taken), and ``written_bytes_per_doc``: bytes this process wrote to disk per document added (the
  kernel's ``write_bytes``), ``disk_bytes_per_doc``: the store directory's size per document;
* the store is then closed and opened again as a reader (``open_s``: opening and loading the index);
* ``search_ms``: p50/p99 of ``Store.search_many`` (index search joined with SQL rows, as ``ask`` uses it) for
  one query and for batches of ``--query-batch``, over ``--queries`` held-out queries from the same mixture;
* ``recall_at_10``: of the store's top 10 against exact search over the same keys (FAISS brute force);
* ``rss_mb``: the process's resident memory after the searches (and its peak).

    python -m experiments.bench.store_scale --sizes 10000,100000,1000000 --seed 0 \
        --out docs/bench/store_scale_seed0.json

Owns: the measurement and its command line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from experiments.bench.store_memory import _rss_kb


def _io_written() -> int:
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _rss_mb() -> float:
    return _rss_kb(os.getpid()) / 1024


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class Keys:
    """Unit keys from a mixture of Gaussian clusters, drawn in order (document i always gets the same key)."""

    def __init__(self, dim: int, clusters: int, seed: int, spread: float = 0.6):
        rng = np.random.default_rng(seed)
        centers = rng.standard_normal((clusters, dim)).astype(np.float32)
        self.centers = centers / np.linalg.norm(centers, axis=1, keepdims=True)
        self.dim, self.spread, self.seed = dim, spread, seed

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        which = rng.integers(0, len(self.centers), n)
        noise = rng.standard_normal((n, self.dim)).astype(np.float32) * (self.spread / np.sqrt(self.dim))
        x = self.centers[which] + noise
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _percentiles(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"p50": round(float(np.percentile(a, 50)), 3), "p99": round(float(np.percentile(a, 99)), 3),
            "mean": round(float(a.mean()), 3)}


def exact_top(batches, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top-``k`` ids per query over every key added, ``batches`` yielding ``(ids, keys)`` (brute force)."""
    import faiss

    best_s = np.full((len(queries), k), -np.inf, np.float32)
    best_i = np.full((len(queries), k), -1, np.int64)
    for ids, keys in batches:
        flat = faiss.IndexFlatIP(keys.shape[1])
        flat.add(keys)
        s, i = flat.search(queries, min(k, len(keys)))
        s = np.concatenate([best_s, s], 1)
        i = np.concatenate([best_i, ids[i]], 1)
        order = np.argsort(-s, 1)[:, :k]
        best_s, best_i = np.take_along_axis(s, order, 1), np.take_along_axis(i, order, 1)
    return best_i


def run(args) -> dict:
    from storage import DocumentIn, RecordIn, Store

    sizes = sorted(int(s) for s in args.sizes.split(","))
    work = Path(args.work or tempfile.mkdtemp(prefix="memkit-scale-"))
    path = work / "store"
    shutil.rmtree(path, ignore_errors=True)
    keys = Keys(args.dim, args.clusters, args.seed)
    qrng = np.random.default_rng(args.seed + 2)
    queries = keys.draw(qrng, args.queries)
    payload = np.zeros(args.payload_bytes // 2, np.float16)
    store = Store.create(path, model_id="synthetic", model_revision=None, model_fingerprint="synthetic",
                         method="rag", method_config={}, key_dim=args.dim)
    if args.index != "auto" or args.ef_search != 96:  # a store before issue 16 has only its flat index
        from storage.index import IndexSpec

        store.reindex(IndexSpec(kind=args.index, ef_search=args.ef_search))
    batched = hasattr(store, "add_documents")
    ids_seen: list[np.ndarray] = []  # memory ids per batch; the keys are drawn again for exact search

    def block_keys(b: int, n: int) -> np.ndarray:
        return keys.draw(np.random.default_rng([args.seed, 1, b]), n)

    results = {"config": {k: v for k, v in vars(args).items() if k != "out"}, "batched_writes": batched, "sizes": []}
    done = 0
    try:
        for size in sizes:
            t0, w0 = time.perf_counter(), _io_written()
            added = 0
            while done < size:
                n = min(args.batch, size - done)
                block = block_keys(len(ids_seen), n)
                items = [(DocumentIn(text=f"synthetic document {done + i} of the scale benchmark, seed {args.seed}",
                                     source=f"doc{done + i}"),
                          [RecordIn("chunk", block[i], {"p": payload}, span=None)]) for i in range(n)]
                if batched:
                    got = store.add_documents(items)
                else:
                    got = [store.add_document(d, r) for d, r in items]
                ids_seen.append(np.asarray([g.memory_ids[0] for g in got], np.int64))
                done += n
                added += n
                if args.progress:
                    print(f"\r{done}/{size} documents, {added / (time.perf_counter() - t0):.0f} docs/s",
                          end="", file=sys.stderr, flush=True)
            add_s = time.perf_counter() - t0
            written = _io_written() - w0
            store.close()
            if args.progress:
                print(file=sys.stderr)
            t0 = time.perf_counter()
            store = Store.open(path)
            store.search_many(queries[:1], 10)  # loads the index
            open_s = time.perf_counter() - t0
            one, batch = [], []
            for q in queries:
                t = time.perf_counter()
                store.search_many(q[None, :], 10)
                one.append((time.perf_counter() - t) * 1000)
            for i in range(0, len(queries), args.query_batch):
                t = time.perf_counter()
                store.search_many(queries[i:i + args.query_batch], 10)
                batch.append((time.perf_counter() - t) * 1000)
            got = store.search_many(queries[:args.recall_queries], 10)
            truth = exact_top(((ids, block_keys(b, len(ids))) for b, ids in enumerate(ids_seen)),
                              queries[:args.recall_queries], 10)
            recall = float(np.mean([len({h.memory_id for h in row} & set(t.tolist())) / 10
                                    for row, t in zip(got, truth)]))
            info = store.index_info() if hasattr(store, "index_info") else {}
            row = {
                "documents": done, "add_seconds": round(add_s, 2), "add_docs_per_s": round(added / add_s, 1),
                "written_bytes_per_doc": round(written / added), "disk_bytes_per_doc": round(_dir_bytes(path) / done),
                "open_s": round(open_s, 2), "search_ms_one": _percentiles(one),
                f"search_ms_batch_{args.query_batch}": _percentiles(batch), "recall_at_10": round(recall, 4),
                "index": info, "rss_mb": round(_rss_mb()), "peak_rss_mb": round(resource.getrusage(
                    resource.RUSAGE_SELF).ru_maxrss / 1024),
            }
            results["sizes"].append(row)
            print(json.dumps(row), flush=True)
            store.close()
            store = Store.open(path, write=True)
    finally:
        store.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,100000", help="comma-separated store sizes to measure at")
    p.add_argument("--dim", type=int, default=384, help="key dimension (384: a MiniLM sentence key)")
    p.add_argument("--clusters", type=int, default=1000)
    p.add_argument("--payload-bytes", type=int, default=4096)
    p.add_argument("--batch", type=int, default=1000, help="documents per add_documents call")
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--query-batch", type=int, default=32)
    p.add_argument("--recall-queries", type=int, default=200)
    p.add_argument("--index", default="auto", choices=["auto", "flat", "hnsw"])
    p.add_argument("--ef-search", type=int, default=96)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", help="folder for the store (default: a temp folder, removed after)")
    p.add_argument("--keep", action="store_true", help="keep the store")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args(argv)
    results = run(args)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
