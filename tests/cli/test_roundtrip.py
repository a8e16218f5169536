"""The CLI round trip: init, ingest (files, a JSONL stream, stdin), ask, ls, show, rm, stats, reindex."""

from __future__ import annotations

import json
import subprocess
import sys

from storage import Store
from pgserver import on_both_databases

DOCS = {
    "ada.md": "Ada Varn is a lighthouse keeper who lives in Port Elsin and works for the Harbour Trust.",
    "tomas.txt": "Tomas Brell is a cartographer born in Kessin. He drew the first map of the Sorrel delta.",
}
STREAM = [
    {"id": "n1", "timestamp": "2026-03-02", "source": "Gazette", "text": "Mira Okonde leads the Harbour Trust."},
    {"id": "n2", "text": "The Survey Office opened a branch in Kessin led by Ilse Marrow."},
]


def write_inputs(tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    for name, text in DOCS.items():
        (notes / name).write_text(text)
    stream = tmp_path / "news.jsonl"
    stream.write_text("".join(json.dumps(o) + "\n" for o in STREAM))
    return notes, stream


@on_both_databases
def test_round_trip(rag_store, tmp_path):
    memkit = rag_store
    notes, stream = write_inputs(tmp_path)
    report = memkit.json("ingest", notes, stream)
    assert report["added"] == 4 and report["duplicates"] == 0 and report["failed"] == []
    report = memkit.json("ingest", "-", "--stream", "manual", input="Ilse Marrow is a geologist of Gull Point.")
    assert report["added"] == 1

    docs = memkit.json("ls")
    assert len(docs) == 5
    by_source = {d["source"]: d for d in docs}
    assert by_source["Gazette"]["external_id"] == "n1" and by_source["Gazette"]["stream"] == "news"
    assert by_source["<stdin>"]["stream"] == "manual" and by_source["<stdin>"]["position"] == 0

    answer = memkit.json("ask", "Where does Ada Varn live?", "--top-k", "2")
    assert answer["method"] == "rag" and isinstance(answer["answer"], str)
    ids = {d["id"] for d in docs}
    assert 1 <= len(answer["sources"]) <= 2
    for src in answer["sources"]:
        assert src["document_id"] in ids and src["kind"] == "chunk"
        text = memkit.json("show", src["document_id"])["text"]
        a, b = src["span"]
        assert 0 <= a < b <= len(text)

    victim = docs[0]["id"]
    removed = memkit.json("rm", victim)
    assert removed["removed"] == [victim]
    assert victim not in {d["id"] for d in memkit.json("ls")}
    for question in ("Where does Ada Varn live?", "Who leads the Harbour Trust?", "lighthouse"):
        assert victim not in {s["document_id"] for s in memkit.json("ask", question, "--top-k", "4")["sources"]}
    assert memkit("show", victim).exit_code != 0

    stats = memkit.json("stats")
    assert stats["documents"] == 4
    rebuilt = memkit.json("reindex")
    assert rebuilt["vectors"] == stats["index_vectors"] > 0
    assert stats["index_kind"] == "flat" and stats["index_spec"] == "auto"

    switched = memkit("reindex", "--index", "hnsw", "--ef-search", "40")
    assert switched.exit_code == 0, switched.stderr
    assert "hnsw (m 32, ef_construction 80, ef_search 40); asked for: hnsw" in switched.stdout
    assert memkit.json("stats")["index_kind"] == "hnsw"
    for question in ("Where does Ada Varn live?", "lighthouse"):  # the graph finds what the flat index found
        assert memkit.json("ask", question, "--top-k", "2")["sources"]
    refused = memkit("reindex", "--index", "ivf")
    assert refused.exit_code == 2 and "--index: index kind must be one of auto, flat, hnsw" in refused.stderr
    assert memkit.json("reindex", "--index", "auto")["index"]["kind"] == "flat"

    health = memkit.json("doctor")
    assert health["problems"] == [] and health["documents"] == 4


def test_human_output_lists_sources(rag_store, tmp_path):
    notes, _ = write_inputs(tmp_path)
    assert rag_store("ingest", notes).exit_code == 0
    result = rag_store("ask", "Who drew the map of the Sorrel delta?")
    assert result.exit_code == 0, result.stderr
    assert "sources:" in result.stdout and "[1] doc" in result.stdout


def test_each_method_answers_with_its_kind_of_sources(memkit, model_dir, tmp_path):
    notes, _ = write_inputs(tmp_path)
    for method, kind in (("closed_book", None), ("prompt", "doc"), ("rag", "chunk")):
        memkit.store = tmp_path / f"store-{method}"
        assert memkit("init", "--model", model_dir, "--method", method).exit_code == 0
        assert memkit.json("ingest", notes)["added"] == 2
        answer = memkit.json("ask", "Who is Ada Varn?")
        assert answer["method"] == method
        kinds = {s["kind"] for s in answer["sources"]}
        assert kinds == (set() if kind is None else {kind})
        with Store.open(memkit.store) as store:
            assert store.info.method == method


def test_help_explains_every_command(memkit):
    result = memkit("--help")
    assert result.exit_code == 0
    for command in ("init", "ingest", "ask", "ls", "show", "rm", "stats", "reindex", "doctor"):
        assert command in result.stdout
    assert "--stream" in memkit("ingest", "--help").stdout


def test_the_command_line_builds_without_importing_torch_transformers_or_faiss():
    """``memkit --help`` (and every command's options, ``memkit train``'s included) must not pay for the heavy
    libraries: they load when a command needs a model or a store."""
    code = ("import sys; from typer.main import get_command; from cli.main import app; "
            "get_command(app).commands['train'].commands['adapter']; "
            "print(sorted(m for m in ('torch', 'transformers', 'faiss', 'sqlalchemy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
