"""Crash safety of batched writes: a writer killed with SIGKILL at any moment loses no committed document and
leaves nothing half-written (each batch is in whole or not at all; the next writer deletes what it left)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from storage import Store
from storehelpers import sqlite_only

BATCH = 25

WRITER = textwrap.dedent(f"""
    import sys
    import numpy as np
    from storage import DocumentIn, RecordIn, Store

    rng = np.random.default_rng(int(sys.argv[2]))
    with Store.open(sys.argv[1], write=True) as store:
        print("ready", flush=True)
        for b in range(10_000):
            items = []
            for i in range({BATCH}):
                n = b * {BATCH} + i
                key = rng.standard_normal(16).astype(np.float32)
                items.append((DocumentIn(text=f"document {{n}} of a crash trial", source=f"d{{n}}"),
                              [RecordIn("chunk", key / np.linalg.norm(key), {{"x": np.full(64, n, np.float32)}})]))
            store.add_documents(items)
""")


@pytest.mark.slow
@sqlite_only
@pytest.mark.parametrize("trial", range(6))
def test_a_writer_killed_at_any_moment_leaves_whole_batches(make_store, tmp_path, trial):
    store = make_store(key_dim=16)
    path = store.path
    store.close()
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(trial)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.15 + 0.25 * trial)  # from the first batches to many saves of the index in
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with Store.open(path) as reader:  # what a reader sees before any writer mends anything
        docs = reader.list_documents()
        assert len(docs) % BATCH == 0  # whole batches only
        for d in docs:
            n = int(d.text.split()[1])
            (memory,) = reader.memories(d.id)
            assert reader.load_payload(memory.id)["x"][0] == n
        count = len(docs)
        assert count > 0 or trial == 0  # the later trials kill a writer that has committed batches
        if count:
            hits = reader.search_many(np.eye(16, dtype=np.float32), 3)
            assert all(len(row) == 3 for row in hits)
    with Store.open(path, write=True) as writer:  # the next writer deletes what the crash left
        assert writer.count_documents() == count
        report = writer.verify()
        assert report.problems == [], report.problems
        assert writer.index_info()["vectors"] == count
