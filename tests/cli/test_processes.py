"""The store persists across processes, a second writer process is refused, SIGTERM closes a command as
cleanly as Ctrl-C, and an ask prints no warnings, as a user would see it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from cli.common import TERMINATED
from experiments.tiny_model import build_tiny_model, build_tokenizer
from storage import Store


def command(store, *args):
    return [sys.executable, "-m", "cli.main", "--store", str(store), *map(str, args)]


def memkit(store, *args, input=None):
    return subprocess.run(command(store, *args), input=input, capture_output=True, text=True, timeout=300)


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


@pytest.fixture(scope="module")
def bounded_model_dir(tmp_path_factory):
    """A tiny llama whose tokenizer has a real length limit (256, its context), as real tokenizers do."""
    tok = build_tokenizer()
    tok.model_max_length = 256
    return build_tiny_model("llama", tmp_path_factory.mktemp("bounded") / "llama", tokenizer=tok)


def test_sigterm_during_an_ingest_closes_the_store_like_ctrl_c(memkit, bounded_model_dir, tmp_path):
    """Exit 143 and one line, after the store has closed: the writer lock is free, the index saved, and every
    document kept is whole. The documents are longer than the tokenizer's limit, so the one line also shows
    that chunking them prints no "sequence length is longer than the maximum" notice."""
    r = memkit("init", "--model", bounded_model_dir, "--method", "rag", "-o", "chunk_tokens=32")
    assert r.exit_code == 0, r.output + r.stderr
    texts = {f"d{i}": " ".join(f"Record {i}.{j}: Ada Varn keeps lighthouse {j} of Port Elsin." for j in range(25))
             for i in range(2000)}
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"text": t, "id": k}) + "\n" for k, t in texts.items()))
    store = memkit.store
    proc = subprocess.Popen(command(store, "ingest", tmp_path / "docs.jsonl"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            with Store.open(store) as reader:
                if reader.count_documents() >= 3:         # it is adding documents now
                    break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, err
    assert [line for line in err.splitlines() if line.strip()] == [TERMINATED]
    assert out == ""
    with Store.open(store, write=True) as writer:               # the writer lock was released
        docs = writer.list_documents()
        assert 3 <= len(docs) < len(texts)
        for doc in docs:                                        # every document kept is whole
            assert doc.text == texts[doc.external_id] and doc.n_memories > 1
    listed = memkit.json("ls")
    assert sorted(d["id"] for d in listed) == sorted(d.id for d in docs)
    doctor = memkit("doctor", "--skip-model")
    assert doctor.exit_code == 0 and "healthy" in doctor.stdout, doctor.stdout   # index saved and in step


def test_doctor_after_a_kill_9_mid_ingest_sees_no_problem(memkit, bounded_model_dir, tmp_path):
    """A crash leaves an index file behind the database (large indexes are saved now and then, and the last
    save may be cut off): a note, not a problem; every document kept is whole, and the next write mends it."""
    r = memkit("init", "--model", bounded_model_dir, "--method", "rag", "-o", "chunk_tokens=32")
    assert r.exit_code == 0, r.output + r.stderr
    texts = {f"d{i}": f"Record {i}: Ada Varn keeps lighthouse {i} of Port Elsin. " * 20 for i in range(2000)}
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"text": t, "id": k}) + "\n" for k, t in texts.items()))
    proc = subprocess.Popen(command(memkit.store, "ingest", tmp_path / "docs.jsonl"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            with Store.open(memkit.store) as reader:
                if reader.count_documents() >= 20:
                    break
            time.sleep(0.05)
        assert proc.poll() is None
        proc.kill()
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    doctor = memkit("doctor", "--skip-model")
    assert doctor.exit_code == 0 and "healthy" in doctor.stdout and "problem" not in doctor.stdout, doctor.stdout
    with Store.open(memkit.store) as reader:
        docs = reader.list_documents()
        assert 20 <= len(docs) < len(texts)
        assert all(d.text == texts[d.external_id] and d.n_memories > 1 for d in docs)
    (tmp_path / "one.txt").write_text("One more document after the crash.")
    assert memkit("ingest", tmp_path / "one.txt").exit_code == 0
    doctor = memkit("doctor", "--skip-model")
    assert doctor.exit_code == 0 and "note:" not in doctor.stdout, doctor.stdout


def test_asking_prints_no_warnings(memkit, bounded_model_dir, tmp_path):
    """No deprecation warning from generating with a KV cache (transformers 5 renamed past_key_values):
    the real command's stderr is empty. A damaged index file is one memkit warning line, no FAISS message."""
    r = memkit("init", "--model", bounded_model_dir, "--method", "rag", "-o", "chunk_tokens=32")
    assert r.exit_code == 0, r.output + r.stderr
    (tmp_path / "a.txt").write_text("Mira Okonde leads the Harbour Trust of the northern coast.")
    assert memkit("ingest", tmp_path / "a.txt").exit_code == 0
    done = subprocess.run(command(memkit.store, "ask", "Who leads the Harbour Trust?"), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and "sources:" in done.stdout, done.stderr
    assert done.stderr == ""
    (memkit.store / "index" / "1.faiss").write_bytes(b"\x00" * 300)
    damaged = subprocess.run(command(memkit.store, "ask", "Who leads the Harbour Trust?"), capture_output=True,
                             text=True, timeout=300)
    assert damaged.returncode == 0      # the same answer and sources (the last line is the time taken)
    assert damaged.stdout.splitlines()[:-1] == done.stdout.splitlines()[:-1]
    lines = damaged.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: index file ") and "checksum" in lines[0], lines
