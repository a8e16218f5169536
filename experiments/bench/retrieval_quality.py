"""Retrieval on real text: how often the gold SQuAD passage is found first, or in the top five, by each retriever.

``python -m experiments.bench.retrieval_quality --data PATH/dev-v1.1.json [--max-questions N] [--seed S]
[--tune-questions 1000] [--depth 100] [--pg-url URL] [--out JSON]``: every paragraph of the SQuAD file is a passage
(dev v1.1: 2,067), and each question's gold passage is the one it was written about. The passages are indexed
(a) by BM25 in a temporary SQLite database through ``storage.lexical`` (FTS5; both tokenizers measured), (b) by
all-MiniLM-L6-v2 keys (``memkit.embedders.MiniLMEmbedder``) in a FAISS flat inner-product index, (c) by both,
fused (``memkit.fusion``: reciprocal rank fusion and normalised-score fusion of the two top-``depth`` lists), and
(d) by memkit's hashed-word ``lexical`` keys (queries IDF-weighted over the passages, as a store does), flat
inner product. Reported: recall@1 and recall@5 of the gold passage.

Fusion settings are never chosen on the questions they are reported on: the first ``--tune-questions`` questions
(in file order) are a held-out slice on which the grid of settings is run and the best (recall@5, then recall@1)
chosen; the rest are the report slice (all of it, or ``--max-questions`` of it drawn with ``--seed``). Every
passage is indexed either way. With ``--pg-url`` (an empty PostgreSQL database) the PostgreSQL form of
``storage.lexical`` is measured too: text search configurations and ranking functions on the held-out slice, the
module's default on the report slice.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

KS = (1, 5)
RRF_KS = (0, 5, 10, 20, 30, 60, 100)
RRF_WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7)
SCORE_WEIGHTS = tuple(round(0.1 * i, 1) for i in range(1, 10))
TOKENIZERS = ("unicode61 remove_diacritics 2", "porter unicode61 remove_diacritics 2")
PG_VARIANTS = [(config, rank, norm) for config in ("english", "simple") for rank in ("ts_rank", "ts_rank_cd")
               for norm in (0, 1)]


def recall(ranked: list[list[int]], gold: list[int], ks=KS) -> dict:
    """``{"r@1": .., "r@5": ..}``: the share of questions whose gold id is among their first k (in percent)."""
    n = max(1, len(gold))
    return {f"r@{k}": round(100.0 * sum(g in r[:k] for r, g in zip(ranked, gold)) / n, 2) for k in ks}


def ids(lists) -> list[list[int]]:
    return [[i for i, _ in lst] for lst in lists]


def bm25_sqlite(passages: list[str], questions: list[str], depth: int, tokenizer: str, folder: Path) -> dict:
    """BM25 lists from ``storage.lexical`` on a temporary SQLite file (rows = passages, ids 1..n)."""
    from sqlalchemy import create_engine

    from storage import lexical

    path = folder / f"bm25-{hashlib.sha1(tokenizer.encode()).hexdigest()[:8]}.db"
    engine = create_engine(f"sqlite:///{path}")
    try:
        t0 = time.perf_counter()
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE memories (id INTEGER PRIMARY KEY AUTOINCREMENT)")
            values = ",".join(f"({i + 1})" for i in range(len(passages)))
            conn.exec_driver_sql(f"INSERT INTO memories (id) VALUES {values}")
            for stmt in lexical.ddl_statements("sqlite", tokenizer=tokenizer):
                conn.exec_driver_sql(stmt)
            lexical.add(conn, [(i + 1, 1, p) for i, p in enumerate(passages)])
        index_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        with engine.connect() as conn:
            lists = lexical.search_many(conn, 1, questions, depth)
        search_s = time.perf_counter() - t0
    finally:
        engine.dispose()
    return {"lists": lists, "index_seconds": round(index_s, 2), "search_ms_per_query":
            round(1000 * search_s / max(1, len(questions)), 3)}


def bm25_postgres(url: str, passages: list[str], questions: list[str], depth: int, variants) -> dict:
    """The PostgreSQL form of ``storage.lexical`` for each ``(config, rank, normalization)``; the database must not
    hold a ``memories`` table already (the tables made here are dropped at the end)."""
    from sqlalchemy import create_engine, inspect

    from storage import lexical

    engine = create_engine(url)
    out = {}
    try:
        if inspect(engine).has_table("memories") or inspect(engine).has_table(lexical.TABLE):
            raise SystemExit("--pg-url must name an empty database (it holds a memories or memory_text table)")
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE memories (id bigint PRIMARY KEY)")
            conn.exec_driver_sql(f"INSERT INTO memories (id) SELECT generate_series(1, {len(passages)})")
            for stmt in lexical.ddl_statements("postgresql"):
                conn.exec_driver_sql(stmt)
        for config, group in itertools.groupby(variants, key=lambda v: v[0]):
            t0 = time.perf_counter()
            with engine.begin() as conn:
                conn.exec_driver_sql(f"DELETE FROM {lexical.TABLE}")
                lexical.add(conn, [(i + 1, 1, p) for i, p in enumerate(passages)], pg=lexical.PgText(config=config))
                conn.exec_driver_sql(f"ANALYZE {lexical.TABLE}")
            index_s = time.perf_counter() - t0
            for _, rank, norm in group:
                pg = lexical.PgText(config=config, rank=rank, normalization=norm)
                t0 = time.perf_counter()
                with engine.connect() as conn:
                    lists = lexical.search_many(conn, 1, questions, depth, pg=pg)
                search_s = time.perf_counter() - t0
                out[(config, rank, norm)] = {"lists": lists, "index_seconds": round(index_s, 2),
                                             "search_ms_per_query": round(1000 * search_s / max(1, len(questions)), 3)}
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {lexical.TABLE}")
            conn.exec_driver_sql("DROP TABLE IF EXISTS memories")
        engine.dispose()
    return out


def flat_ip(doc_keys: np.ndarray, query_keys: np.ndarray, depth: int) -> list[list[tuple[int, float]]]:
    """Top-``depth`` ``(id, score)`` of each query by inner product (FAISS flat index, ids 1..n)."""
    import faiss

    index = faiss.IndexFlatIP(doc_keys.shape[1])
    index.add(np.ascontiguousarray(doc_keys, dtype=np.float32))
    scores, rows = index.search(np.ascontiguousarray(query_keys, dtype=np.float32), depth)
    return [[(int(r) + 1, float(s)) for r, s in zip(rs, ss) if r >= 0] for rs, ss in zip(rows, scores)]


def fused(dense, lexical, config, limit: int) -> list[list[int]]:
    from memkit.fusion import fuse

    return [[i for i, _ in fuse(d, b, config, limit=limit)] for d, b in zip(dense, lexical)]


def choose(grid, dense, lexical, gold) -> tuple[dict, list[dict]]:
    """Runs each config of ``grid`` on the held-out lists; returns the best by (r@5, r@1) and every row."""
    rows = []
    for config in grid:
        r = recall(fused(dense, lexical, config, max(KS)), gold)
        rows.append({"mode": config.mode, "rrf_k": config.rrf_k, "dense_weight": config.dense_weight, **r})
    best = max(rows, key=lambda r: (r["r@5"], r["r@1"]))
    return best, rows


def run(args) -> dict:
    import torch

    from memkit.datasets.loaders import load_benchmark
    from memkit.embedders import LexicalEmbedder, MiniLMEmbedder
    from memkit.fusion import FusionConfig

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    data = Path(args.data)
    bench = load_benchmark("squad", data)
    passages = [d.text for d in bench.documents]
    number = {d.external_id: i + 1 for i, d in enumerate(bench.documents)}
    questions = bench.questions
    tune, rest = questions[:args.tune_questions], questions[args.tune_questions:]
    if args.max_questions is not None and args.max_questions < len(rest):
        keep = set(random.Random(args.seed).sample(range(len(rest)), args.max_questions))
        rest = [q for i, q in enumerate(rest) if i in keep]
    asked = tune + rest
    texts = [q.question for q in asked]
    gold = [number[q.doc_ids[0]] for q in asked]
    slices = {"tune": slice(0, len(tune)), "report": slice(len(tune), len(asked))}
    timings: dict = {}
    lists: dict = {}

    with tempfile.TemporaryDirectory(prefix="retrieval-quality-") as tmp:
        for tok in TOKENIZERS:
            got = bm25_sqlite(passages, texts, args.depth, tok, Path(tmp))
            lists[f"bm25[{tok}]"] = got.pop("lists")
            timings[f"bm25[{tok}]"] = got

    t0 = time.perf_counter()
    enc = MiniLMEmbedder()
    timings["minilm_load_seconds"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    doc_keys = enc.embed(passages)
    timings["minilm_passages_per_second"] = round(len(passages) / (time.perf_counter() - t0), 1)
    t0 = time.perf_counter()
    q_keys = enc.embed(texts)
    timings["minilm_questions_per_second"] = round(len(texts) / (time.perf_counter() - t0), 1)
    lists["dense"] = flat_ip(doc_keys, q_keys, args.depth)

    hashed = LexicalEmbedder()
    h_docs = hashed.embed(passages)
    h_queries = hashed.weigh_queries(hashed.embed(texts), lambda: ((h_docs != 0).sum(0), len(h_docs)))
    lists["hashed_lexical"] = flat_ip(h_docs, h_queries, max(KS))

    # The BM25 tokenizer is chosen on the held-out slice like everything else.
    bm25_rows = {tok: recall(ids(lists[f"bm25[{tok}]"][slices["tune"]]), gold[slices["tune"]]) for tok in TOKENIZERS}
    tokenizer = max(TOKENIZERS, key=lambda t: (bm25_rows[t]["r@5"], bm25_rows[t]["r@1"]))
    bm25 = lists[f"bm25[{tokenizer}]"]

    tune_d, tune_b, tune_g = lists["dense"][slices["tune"]], bm25[slices["tune"]], gold[slices["tune"]]
    best_rrf, rrf_grid = choose([FusionConfig("rrf", k, w) for k in RRF_KS for w in RRF_WEIGHTS],
                                tune_d, tune_b, tune_g)
    best_score, score_grid = choose([FusionConfig("score", 60.0, w) for w in SCORE_WEIGHTS],
                                    tune_d, tune_b, tune_g)
    configs = {
        "rrf (chosen)": FusionConfig("rrf", best_rrf["rrf_k"], best_rrf["dense_weight"]),
        "score (chosen)": FusionConfig("score", 60.0, best_score["dense_weight"]),
        "rrf (k=60, equal weights)": FusionConfig("rrf", 60.0, 0.5),
        "score (equal weights)": FusionConfig("score", 60.0, 0.5),
    }

    results = {}
    for part, sl in slices.items():
        g = gold[sl]
        row = {f"bm25 sqlite [{tok}]": recall(ids(lists[f"bm25[{tok}]"][sl]), g) for tok in TOKENIZERS}
        row["dense minilm"] = recall(ids(lists["dense"][sl]), g)
        for name, config in configs.items():
            row[f"fused {name}"] = recall(fused(lists["dense"][sl], bm25[sl], config, max(KS)), g)
        row["hashed lexical embedder"] = recall(ids(lists["hashed_lexical"][sl]), g)
        results[part] = {"questions": len(g), "recall": row}

    postgres = None
    if args.pg_url:
        from storage import lexical

        got = bm25_postgres(args.pg_url, passages, texts, args.depth, PG_VARIANTS)
        default = (lexical.PG.config, lexical.PG.rank, lexical.PG.normalization)
        postgres = {"default": {"config": default[0], "rank": default[1], "normalization": default[2]},
                    "variants": []}
        for (config, rank, norm), r in got.items():
            postgres["variants"].append({
                "config": config, "rank": rank, "normalization": norm,
                "tune": recall(ids(r["lists"][slices["tune"]]), tune_g),
                "report": recall(ids(r["lists"][slices["report"]]), gold[slices["report"]]),
                "index_seconds": r["index_seconds"], "search_ms_per_query": r["search_ms_per_query"]})
        best_pg = max(postgres["variants"], key=lambda v: (v["tune"]["r@5"], v["tune"]["r@1"]))
        postgres["chosen_on_tune"] = {k: best_pg[k] for k in ("config", "rank", "normalization")}
        for part, sl in slices.items():
            row = results[part]["recall"]
            row[f"bm25 postgresql [{default[0]}, {default[1]}, normalization {default[2]}]"] = recall(
                ids(got[default]["lists"][sl]), gold[sl])
            row["fused rrf (chosen) over postgresql"] = recall(
                fused(lists["dense"][sl], got[default]["lists"][sl], configs["rrf (chosen)"], max(KS)), gold[sl])

    return {
        "command": " ".join(["python -m experiments.bench.retrieval_quality", *(args.argv or [])]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
        "data": {"path": str(data), "sha256": hashlib.sha256(data.read_bytes()).hexdigest(),
                 "version": bench.meta.get("version"), "passages": len(passages), "questions": len(questions)},
        "slices": {"tune": f"the first {len(tune)} questions (file order): settings chosen here",
                   "report": (f"{len(rest)} of the other {len(questions) - len(tune)} questions, drawn with seed "
                              f"{args.seed}" if len(rest) < len(questions) - len(tune)
                              else f"all {len(rest)} other questions")},
        "depth": args.depth,
        "bm25_tokenizer_chosen": tokenizer,
        "fusion_chosen": {"rrf": best_rrf, "score": best_score},
        "fusion_grid_tune": {"rrf": rrf_grid, "score": score_grid},
        "results": results,
        "postgresql": postgres,
        "timings": timings,
    }


def table(report: dict) -> str:
    rows = list(report["results"]["report"]["recall"])
    lines = ["| retriever | tune r@1 | tune r@5 | report r@1 | report r@5 |", "|---|---|---|---|---|"]
    for name in rows:
        t, r = report["results"]["tune"]["recall"][name], report["results"]["report"]["recall"][name]
        lines.append(f"| {name} | {t['r@1']} | {t['r@5']} | {r['r@1']} | {r['r@5']} |")
    return "\n".join(lines)


def _redacted(argv: list[str]) -> list[str]:
    """The command line as recorded: a database URL (it may hold a password) replaced by ``URL``."""
    out = []
    for i, a in enumerate(argv):
        if a.startswith("--pg-url="):
            a = "--pg-url=URL"
        elif i > 0 and argv[i - 1] == "--pg-url":
            a = "URL"
        out.append(a)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="a SQuAD JSON file (dev-v1.1.json)")
    p.add_argument("--max-questions", type=int, default=None,
                   help="report on this many questions of the report slice (drawn with --seed); default all")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tune-questions", type=int, default=1000,
                   help="the first N questions: the held-out slice that settings are chosen on")
    p.add_argument("--depth", type=int, default=100, help="candidates per retriever that fusion sees")
    p.add_argument("--pg-url", default=None, help="an empty PostgreSQL database to measure storage.lexical on")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    args.argv = _redacted(list(sys.argv[1:] if argv is None else argv))
    if args.max_questions is not None and args.max_questions < 1:
        p.error("--max-questions must be at least 1")
    if args.tune_questions < 1 or args.depth < max(KS):
        p.error(f"--tune-questions must be at least 1 and --depth at least {max(KS)}")
    report = run(args)
    print(table(report))
    print(f"bm25 tokenizer: {report['bm25_tokenizer_chosen']}; fusion: {json.dumps(report['fusion_chosen'])}")
    if report["postgresql"]:
        print("| postgresql config | rank | normalization | tune r@1 | tune r@5 | report r@1 | report r@5 | ms/query |")
        print("|---|---|---|---|---|---|---|---|")
        for v in report["postgresql"]["variants"]:
            print(f"| {v['config']} | {v['rank']} | {v['normalization']} | {v['tune']['r@1']} | {v['tune']['r@5']} | "
                  f"{v['report']['r@1']} | {v['report']['r@5']} | {v['search_ms_per_query']} |")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(report, fh, indent=2)


if __name__ == "__main__":
    main()
