"""A store on PostgreSQL, beyond what every store test checks on it: the database's writer lock (two store
directories on one database, as two machines sharing it), the errors of a server that cannot be used, and
reader processes following a writer."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from storage import DocumentIn, Store, StoreLockedError
from storage.database import database_writer
from storage.errors import CorruptDatabaseError, DatabaseUnavailableError
from storage.root import StoreRoot
from storehelpers import doc, keyed, unit_rows

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(300)]

SPEC = dict(model_id="tiny/model", model_revision=None, model_fingerprint="fp-1", method="rag",
            method_config={}, key_dim=None)
REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _second_directory(store: Path, other: Path) -> Path:
    """Another store directory on ``store``'s database (as a second machine would have): its own ``store.json``
    naming the same URL, and empty blob and index folders."""
    other.mkdir()
    shutil.copy(store / "store.json", other / "store.json")
    (other / "blobs").mkdir()
    (other / "index").mkdir()
    return other


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


def _spawn_writer(path: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())
    line = proc.stdout.readline()
    if line.strip() != "holding":
        proc.kill()
        pytest.fail(f"writer subprocess did not start: {line!r} {proc.stderr.read()}")
    return proc


# ---- the database's writer lock ---------------------------------------------------------------------------


def test_two_store_directories_on_one_database_have_one_writer(tmp_path, postgres_db, rng):
    url = postgres_db()
    key = unit_rows(rng, 1)[0]
    with Store.create(tmp_path / "a", db_url=url, **SPEC) as a:
        a.add_document(doc(0), [keyed(key)])
    b_path = _second_directory(tmp_path / "a", tmp_path / "b")

    writer = Store.open(tmp_path / "a", write=True)
    try:
        with pytest.raises(StoreLockedError) as err:  # no lock file in b/ is held: the database refuses it
            Store.open(b_path, write=True)
        message = str(err.value)
        assert err.value.pid == os.getpid() and err.value.host == socket.gethostname()
        assert f"pid {os.getpid()} on host {socket.gethostname()}" in message
        assert "the database's writer lock" in message and "wait for it to finish" in message
        assert url.split("@")[1] in message and ":***@" in message and url.split(":")[2].split("@")[0] not in message
        assert not (b_path / "write.lock").read_text().strip(), "the refused writer left no pid behind"

        with pytest.raises(StoreLockedError):  # nor may a new store be made on that database meanwhile
            Store.create(tmp_path / "c", db_url=url, **SPEC)
        assert not (tmp_path / "c").exists()

        with Store.open(b_path) as reader:  # readers take no lock, and see the writer's commits
            assert reader.count_documents() == 1
            writer.add_document(doc(1), [keyed(unit_rows(rng, 1)[0])])
            assert reader.count_documents() == 2
            assert reader.search(key, 1)[0].document_id == 1
            assert database_writer(reader._engine) == os.getpid()
            report = reader.verify(check_blobs=False)
            assert report.writer_pid == os.getpid(), report  # doctor on b/ knows a writer works elsewhere
            assert any("is writing the store" in note for note in report.notes), report
    finally:
        writer.close()
    with Store.open(b_path, write=True) as b:  # the writer closed: the lock went with it, b holds it now
        assert b.writable and database_writer(b._engine) == os.getpid()
    with Store.open(b_path) as reader:
        assert database_writer(reader._engine) is None


def test_a_writer_process_on_another_directory_is_named_and_its_death_frees_the_lock(tmp_path, postgres_db):
    url = postgres_db()
    Store.create(tmp_path / "a", db_url=url, **SPEC).close()
    b_path = _second_directory(tmp_path / "a", tmp_path / "b")

    proc = _spawn_writer(tmp_path / "a")
    try:
        with pytest.raises(StoreLockedError) as err:
            Store.open(b_path, write=True)
        assert err.value.pid == proc.pid and f"pid {proc.pid} on host" in str(err.value)
        with pytest.raises(StoreLockedError, match=f"pid {proc.pid}"):  # a whole store root too (memkit serve)
            StoreRoot.open(b_path, write=True)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    deadline = time.monotonic() + 10  # the server ends the dead client's session when it sees the socket close
    while True:
        try:
            with Store.open(b_path, write=True) as b:
                assert b.writable
            break
        except StoreLockedError:
            assert time.monotonic() < deadline, "the killed writer's lock was never released"
            time.sleep(0.1)


def test_a_store_root_holds_the_database_lock_for_all_its_collections(tmp_path, postgres_db):
    url = postgres_db()
    with StoreRoot.open(tmp_path / "a", write=True, create=True, db_url=url) as root:
        root.create_collection("one", **SPEC)
        root.create_collection("two", **SPEC)
        b_path = _second_directory(tmp_path / "a", tmp_path / "b")
        for name in ("one", "two"):
            with pytest.raises(StoreLockedError, match="writer lock"):
                Store.open(b_path, write=True, collection=name)
    with Store.open(b_path, write=True, collection="two") as two:
        assert two.writable


def test_a_writer_whose_lock_session_ended_stops_writing(tmp_path, postgres_db, postgres_server, rng):
    """A server restart (here: every session of the writer ended by an administrator) takes the advisory lock
    with it; the writer must not go on writing beside a new one."""
    url = postgres_db()
    writer = Store.create(tmp_path / "a", db_url=url, **SPEC)
    try:
        writer.add_document(doc(0), [keyed(unit_rows(rng, 1)[0])])
        database = url.rsplit("/", 1)[1]
        with postgres_server.connect() as admin:
            ended = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                  "WHERE datname = %s AND pid <> pg_backend_pid()", (database,)).fetchone()[0]
        assert ended >= 2  # the lock's session and the pool's
        b_path = _second_directory(tmp_path / "a", tmp_path / "b")
        deadline = time.monotonic() + 10
        while True:  # the terminated sessions end asynchronously
            try:
                other = Store.open(b_path, write=True)
                break
            except StoreLockedError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        with other:
            with pytest.raises(DatabaseUnavailableError, match="lost its writer lock"):
                writer.add_document(doc(1), [keyed(unit_rows(rng, 1)[0])])
            other.add_document(doc(2), [keyed(unit_rows(rng, 1)[0])])
            assert [d.id for d in other.list_documents()] == [1, 2]
    finally:
        writer.close()


# ---- a server that cannot be used -------------------------------------------------------------------------


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


@pytest.mark.parametrize("problem", ["unreachable", "password", "no_database"])
def test_a_server_that_cannot_be_used_is_one_line_without_the_password(tmp_path, postgres_server, problem):
    good = postgres_server.password
    url, says = {
        "unreachable": (postgres_server.url("x", port=_refused_port()), "cannot be reached (Connection refused)"),
        "password": (postgres_server.url("postgres", password="Wrong-Secret-42"), "refused the login"),
        "no_database": (postgres_server.url("never_made"), "does not exist on its server; create it first"),
    }[problem]
    with pytest.raises(DatabaseUnavailableError) as err:
        Store.create(tmp_path / "new", db_url=url, **SPEC)
    message = str(err.value)
    assert says in message and "\n" not in message and err.value.exit_code == 3
    assert "Wrong-Secret-42" not in message and good not in message and ":***@" in message
    if problem == "password":
        assert 'password authentication failed for user "memkit"' in message and "check the user name" in message
    if problem == "no_database":
        assert "createdb never_made" in message
    assert not (tmp_path / "new").exists(), "a failed create leaves nothing behind"


def test_a_user_without_the_privilege_to_create_tables_is_told_so(tmp_path, postgres_server, postgres_db):
    url = postgres_db()
    role, secret = f"memkit_guest_{os.getpid()}", "Guest-Secret-7"
    with postgres_server.connect() as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{secret}'")
    try:
        guest = url.replace(f"memkit:{postgres_server.password}@", f"{role}:{secret}@")
        with pytest.raises(DatabaseUnavailableError) as err:  # PostgreSQL 15: no CREATE on public for others
            Store.create(tmp_path / "s", db_url=guest, **SPEC)
        message = str(err.value)
        assert "permission denied for schema public" in message and "lacks a privilege" in message
        assert secret not in message and f"{role}:***@" in message and not (tmp_path / "s").exists()
    finally:
        with postgres_server.connect() as admin:
            admin.execute(f"DROP DATABASE IF EXISTS \"{url.rsplit('/', 1)[1]}\" WITH (FORCE)")
            admin.execute(f"DROP ROLE {role}")


def test_a_store_whose_database_was_dropped_says_so(tmp_path, postgres_server, rng):
    name = postgres_server.create_database()
    with Store.create(tmp_path / "s", db_url=postgres_server.url(name), **SPEC) as store:
        store.add_document(doc(0), [keyed(unit_rows(rng, 1)[0])])
    postgres_server.drop_database(name)
    for write in (False, True):
        with pytest.raises(DatabaseUnavailableError, match=f"/{name} does not exist on its server"):
            Store.open(tmp_path / "s", write=write)
    with postgres_server.connect() as admin:
        assert admin.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone()[0] == 0


def test_an_empty_database_is_not_a_store(tmp_path, postgres_db):
    url = postgres_db()
    Store.create(tmp_path / "s", db_url=url, **SPEC).close()
    other = _second_directory(tmp_path / "s", tmp_path / "t")
    (other / "store.json").write_text(json.dumps({"format": 1, "db_url": postgres_db()}))  # fresh and empty
    for write in (False, True):
        with pytest.raises(CorruptDatabaseError, match="restore it from a backup"):
            Store.open(other, write=write)


def test_the_password_may_come_from_the_environment(tmp_path, postgres_server, monkeypatch, rng):
    """A URL without its password (store.json is readable by anyone who may read the store): libpq takes it
    from PGPASSWORD (or ~/.pgpass)."""
    name = postgres_server.create_database()
    try:
        url = postgres_server.url(name).replace(f":{postgres_server.password}@", "@")
        monkeypatch.setenv("PGPASSWORD", postgres_server.password)
        with Store.create(tmp_path / "s", db_url=url, **SPEC) as store:
            store.add_document(doc(0), [keyed(unit_rows(rng, 1)[0])])
        assert postgres_server.password not in (tmp_path / "s" / "store.json").read_text()
        with Store.open(tmp_path / "s") as reader:
            assert reader.count_documents() == 1
        monkeypatch.delenv("PGPASSWORD")
        monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
        with pytest.raises(DatabaseUnavailableError, match="refused the login"):
            Store.open(tmp_path / "s")
    finally:
        postgres_server.drop_database(name)


# ---- readers in other processes while the writer writes ---------------------------------------------------

READER = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    from storage import Store

    def key(i, j, dim=16):
        v = np.random.default_rng(1000 * i + j).standard_normal(dim).astype(np.float32)
        return v / np.linalg.norm(v)

    path, final = sys.argv[1], int(sys.argv[2])
    counts, problems, rounds = [], [], 0
    with Store.open(path) as store:
        print("reading", flush=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            rows = store.list_documents()
            counts.append(len(rows))
            for row in rows:
                i = int(row.source.split("-")[1])
                if row.text != f"whole document {i}: " + "words " * i:
                    problems.append(f"document {i}: text {row.text!r}")
                if row.n_memories != 1 + i % 3:
                    problems.append(f"document {i}: {row.n_memories} memories in its row count")
            if rows:
                newest = max(rows, key=lambda r: r.id)
                i = int(newest.source.split("-")[1])
                mems = store.memories(newest.id)
                if len(mems) != 1 + i % 3:
                    problems.append(f"document {i}: {len(mems)} memories")
                for j, m in enumerate(mems):
                    hits = store.search_many(key(i, j)[None], 1, with_text=True)[0]
                    if not hits or hits[0].memory_id != m.id or hits[0].text != newest.text:
                        problems.append(f"document {i}: memory {j} not found by its key ({hits[:1]})")
                    payload = store.load_payload(m.id)
                    if not np.array_equal(payload["x"], np.full(4, 10 * i + j, np.float32)):
                        problems.append(f"document {i}: memory {j} payload {payload}")
            rounds += 1
            if len(rows) >= final:
                break
    print(json.dumps({"counts": counts, "problems": problems[:20], "rounds": rounds}), flush=True)
    """
)


def _key(i: int, j: int, dim: int = 16) -> np.ndarray:
    v = np.random.default_rng(1000 * i + j).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def test_reader_processes_see_only_whole_documents_while_the_writer_writes(tmp_path, postgres_db):
    n_docs = 40
    writer = Store.create(tmp_path / "s", db_url=postgres_db(), **SPEC)
    readers = []
    try:
        writer.add_document(doc_of(0), records_of(0))  # a first document: the readers open a store with keys
        for _ in range(3):
            proc = subprocess.Popen([sys.executable, "-c", READER, str(tmp_path / "s"), str(n_docs)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
            readers.append(proc)
        for proc in readers:
            line = proc.stdout.readline()
            assert line.strip() == "reading", proc.stderr.read()
        for i in range(1, n_docs):
            writer.add_document(doc_of(i), records_of(i))
            time.sleep(0.02)  # let the readers look between commits
        results = []
        for proc in readers:
            out, err = proc.communicate(timeout=180)
            assert proc.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in readers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        writer.close()
    for result in results:
        assert result["problems"] == [], result["problems"]
        assert result["counts"] == sorted(result["counts"]) and result["counts"][-1] == n_docs
    seen = {n for result in results for n in result["counts"]}
    assert len(seen) >= 3, f"the readers read while the writer wrote: counts {sorted(seen)}"


def doc_of(i: int) -> DocumentIn:
    return DocumentIn(text=f"whole document {i}: " + "words " * i, source=f"doc-{i}")


def records_of(i: int):
    return [keyed(_key(i, j), tensors={"x": np.full(4, 10 * i + j, np.float32)}) for j in range(1 + i % 3)]
