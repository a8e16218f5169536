"""The single-writer lock, across processes and within one, and readers alongside a writer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from storage import Store, StoreLockedError
from storage.lock import WriterLock
from storehelpers import doc, keyed, unit_rows

HOLDER = textwrap.dedent(
    """
    import sys
    from storage import Store
    store = Store.open(sys.argv[1], write=True)
    print("holding", flush=True)
    sys.stdin.readline()
    store.close()
    """
)


def _spawn_writer(path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    if line.strip() != "holding":
        proc.kill()
        pytest.fail(f"writer subprocess did not start: {line!r} {proc.stderr.read()}")
    return proc


def test_second_writer_in_another_process_is_refused_with_its_pid(make_store, rng):
    store = make_store()
    key = unit_rows(rng, 1)[0]
    store.add_document(doc(0), [keyed(key)])
    store.close()

    proc = _spawn_writer(store.path)
    try:
        with pytest.raises(StoreLockedError) as err:
            Store.open(store.path, write=True)
        assert err.value.pid == proc.pid
        assert f"pid {proc.pid}" in str(err.value) and "wait for it to finish" in str(err.value)

        with Store.open(store.path) as reader:  # readers take no lock
            assert reader.count_documents() == 1
            assert reader.search(key, 1)[0].document_id == 1
    finally:
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(timeout=30) == 0

    with Store.open(store.path, write=True) as writer:
        assert writer.writable


def test_killed_holder_releases_the_lock(make_store):
    store = make_store()
    store.close()
    proc = _spawn_writer(store.path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    with Store.open(store.path, write=True) as writer:  # no stale lock, though the file still names the pid
        assert writer.writable


def test_second_writer_in_the_same_process_is_refused(make_store):
    store = make_store()
    with pytest.raises(StoreLockedError) as err:
        Store.open(store.path, write=True)
    assert err.value.pid == os.getpid()
    with Store.open(store.path) as reader:
        assert not reader.writable
    store.close()
    with Store.open(store.path, write=True) as again:
        assert again.writable


def test_writer_lock_records_the_pid_and_releases_on_close(tmp_path):
    lock = WriterLock(tmp_path).acquire()
    assert (tmp_path / "write.lock").read_text().strip() == str(os.getpid())
    with pytest.raises(StoreLockedError):
        WriterLock(tmp_path).acquire()
    lock.release()
    lock.release()
    with WriterLock(tmp_path) as again:
        assert again.held
