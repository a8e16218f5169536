"""The store persists across processes, and a second writer process is refused, as a user would see it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap


def memkit(store, *args, input=None):
    return subprocess.run([sys.executable, "-m", "cli.main", "--store", str(store), *map(str, args)],
                          input=input, capture_output=True, text=True, timeout=300)


def test_round_trip_across_processes(model_dir, tmp_path):
    store = tmp_path / "store"
    done = memkit(store, "init", "--model", model_dir, "--method", "rag", "-o", "chunk_tokens=32")
    assert done.returncode == 0, done.stderr
    (tmp_path / "a.txt").write_text("Ada Varn lives in Port Elsin.")
    (tmp_path / "s.jsonl").write_text(json.dumps({"text": "Mira Okonde leads the Harbour Trust."}) + "\n")
    done = memkit(store, "ingest", tmp_path / "a.txt", tmp_path / "s.jsonl", "-", input="Read from stdin.")
    assert done.returncode == 0, done.stderr
    assert "ingested 3 document(s)" in done.stdout
    answer = json.loads(memkit(store, "ask", "Who leads the Harbour Trust?", "--json").stdout)
    assert answer["sources"], "a fresh process finds what another process ingested"
    listed = json.loads(memkit(store, "ls", "--json").stdout)
    assert len(listed) == 3


def test_second_writer_process_is_refused(model_dir, tmp_path):
    store = tmp_path / "store"
    assert memkit(store, "init", "--model", model_dir, "--method", "closed_book").returncode == 0
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from storage import Store
        with Store.open({str(store)!r}, write=True):
            print("ready", flush=True)
            sys.stdin.readline()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        (tmp_path / "a.txt").write_text("text")
        done = memkit(store, "ingest", tmp_path / "a.txt")
        assert done.returncode == 3
        assert f"pid {holder.pid}" in done.stderr and "Traceback" not in done.stderr
    finally:
        holder.communicate("\n", timeout=30)
    assert memkit(store, "ingest", tmp_path / "a.txt").returncode == 0
