"""``memkit serve`` on a store whose database is PostgreSQL: ingest and ask over HTTP, another store directory
on the same database (a second machine) reading what the server wrote, and refused as a writer while the
server holds the database's writer lock."""

from __future__ import annotations

import json
import shutil
import socket

import pytest

from serverhelpers import RAG_OPTIONS

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(300)]

PEOPLE = [
    {"id": "ada", "text": "Ada Varn is a lighthouse keeper who lives in Port Elsin."},
    {"id": "tomas", "text": "Tomas Brell is a cartographer born in Kessin."},
]


def test_a_server_on_postgres_and_a_second_directory_on_its_database(servers, memkit_cli, model_dir, postgres_db,
                                                                     tmp_path):
    store, elsewhere = tmp_path / "store", tmp_path / "elsewhere"  # elsewhere: a second machine's directory
    args = ["init", "--model", model_dir, "--method", "rag", "--db-url", postgres_db()]
    for key, value in RAG_OPTIONS.items():
        args += ["-o", f"{key}={value}"]
    made = memkit_cli(store)(*args)
    assert made.exit_code == 0, made.output + made.stderr
    shutil.copytree(store, elsewhere)
    there = memkit_cli(elsewhere)

    server = servers(store, "--allow-path", model_dir)
    with server.client() as client:
        r = client.post("/collections/default/documents", params={"wait": "true"}, json=PEOPLE)
        assert r.status_code == 200 and r.json()["added"] == 2, r.text
        r = client.post("/collections/default/ask", json={"question": "Where does Ada Varn live?", "top_k": 1})
        assert r.status_code == 200, r.text
        assert r.json()["sources"][0]["external_id"] == "ada"

        listed = there("ls", "--json")
        assert listed.exit_code == 0, listed.stderr
        assert sorted(d["external_id"] for d in json.loads(listed.stdout)) == ["ada", "tomas"]
        (tmp_path / "c.txt").write_text("Mira Okonde leads the Harbour Trust.")
        refused = there("ingest", tmp_path / "c.txt")
        assert refused.exit_code == 3, refused.output + refused.stderr
        assert f"pid {server.proc.pid} on host {socket.gethostname()}" in refused.stderr
        assert "the database's writer lock" in refused.stderr and "Traceback" not in refused.stderr

    assert server.terminate() == 0, server.log()
    added = there("ingest", tmp_path / "c.txt")
    assert added.exit_code == 0 and "ingested 1 document(s)" in added.stdout, added.output + added.stderr
    listed = memkit_cli(store)("ls", "--json")
    assert listed.exit_code == 0 and len(json.loads(listed.stdout)) == 3, listed.stdout
