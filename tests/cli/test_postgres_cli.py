"""The CLI on a store whose database is PostgreSQL (``memkit init --db-url postgresql+psycopg://...``): a server
that cannot be used is one line without the password, and two store directories on one database (two machines)
have one writer between them, which the other's commands name."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.postgres


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("problem", ["unreachable", "password", "no_database"])
def test_init_on_a_server_that_cannot_be_used_is_one_line(memkit, model_dir, postgres_server, problem):
    url, says = {
        "unreachable": (postgres_server.url("x", port=_closed_port()), "cannot be reached"),
        "password": (postgres_server.url("postgres", password="Wrong-Secret-42"), "refused the login"),
        "no_database": (postgres_server.url("never_made"), "does not exist on its server"),
    }[problem]
    result = memkit("init", "--model", model_dir, "--db-url", url)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 3, result.output + result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: the store's database postgresql+psycopg://memkit:***@")
    assert says in lines[0] and "Traceback" not in result.output + result.stderr
    assert "Wrong-Secret-42" not in result.stderr and postgres_server.password not in result.stderr
    assert not memkit.store.exists()


def test_two_store_directories_on_one_database_share_documents_and_one_writer(memkit, model_dir, postgres_db,
                                                                                tmp_path):
    url = postgres_db()
    made = memkit("init", "--model", model_dir, "--method", "rag", "-o", "chunk_tokens=32", "--db-url", url)
    assert made.exit_code == 0, made.output + made.stderr
    (tmp_path / "a.txt").write_text("Ada Varn keeps the lighthouse of Port Elsin.")
    (tmp_path / "b.txt").write_text("Tomas Brell draws the maps of Kessin.")
    assert memkit("ingest", tmp_path / "a.txt").exit_code == 0

    other = type(memkit)(tmp_path / "elsewhere")  # a second machine's store directory: here a copy
    shutil.copytree(memkit.store, other.store)
    assert [d["source"] for d in other.json("ls")] == [str(tmp_path / "a.txt")]

    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from storage import Store
        with Store.open({str(memkit.store)!r}, write=True):
            print("ready", flush=True)
            sys.stdin.readline()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        refused = other("ingest", tmp_path / "b.txt")
        assert refused.exit_code == 3, refused.output + refused.stderr
        assert f"pid {holder.pid} on host {socket.gethostname()}" in refused.stderr
        assert "the database's writer lock" in refused.stderr and "Traceback" not in refused.stderr
        assert other("ls").exit_code == 0, "readers are not blocked by the writer"
        doctor = other("doctor", "--skip-model")
        assert doctor.exit_code == 0 and f"pid {holder.pid} is writing the store" in doctor.stdout, doctor.stdout
    finally:
        holder.communicate("\n", timeout=30)

    added = other.json("ingest", tmp_path / "b.txt")
    assert added["added"] == 1
    assert sorted(d["source"] for d in memkit.json("ls")) == sorted(str(tmp_path / n) for n in ("a.txt", "b.txt"))
    answer = memkit.json("ask", "Who draws the maps of Kessin?", "--top-k", "1")
    assert [s["document_id"] for s in answer["sources"]] == [2]


def test_the_password_may_live_in_the_environment_not_in_store_json(memkit, model_dir, postgres_server, monkeypatch,
                                                                      tmp_path):
    name = postgres_server.create_database()
    try:
        monkeypatch.setenv("PGPASSWORD", postgres_server.password)  # libpq reads it at each connection
        url = postgres_server.url(name).replace(f":{postgres_server.password}@", "@")
        done = memkit("init", "--model", model_dir, "--method", "rag", "-o", "chunk_tokens=32", "--db-url", url)
        assert done.exit_code == 0, done.output + done.stderr
        assert postgres_server.password not in (memkit.store / "store.json").read_text()
        (tmp_path / "a.txt").write_text("Mira Okonde leads the Harbour Trust.")
        assert memkit("ingest", tmp_path / "a.txt").exit_code == 0
        answer = memkit.json("ask", "Who leads the Harbour Trust?")
        assert answer["sources"] and answer["sources"][0]["document_id"] == 1
        stats = memkit.json("stats")
        assert stats["documents"] == 1 and stats["db_bytes"] > 0
        monkeypatch.delenv("PGPASSWORD")
        monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
        refused = memkit("ls")
        assert refused.exit_code == 3 and "refused the login" in refused.stderr
        assert "no password supplied" in refused.stderr, refused.stderr
    finally:
        postgres_server.drop_database(name)
