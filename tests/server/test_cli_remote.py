"""``memkit ingest --server`` and ``memkit ask --server``: the CLI through a running server, its answers equal to
the server's own, refusals and an unreachable server as one line each."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.timeout(180)

DOCS = [
    {"id": "k1", "text": "Kel Amaro keeps bees on the hills above Varda.", "timestamp": "2021-01-01T00:00:00Z"},
    {"id": "k2", "text": "Ines Roth builds boats in the harbour of Lusk.", "timestamp": "2023-01-01T00:00:00Z"},
]


@pytest.fixture(scope="module")
def served(new_store, servers):
    return servers(new_store())


def test_ingest_and_ask_through_the_server(served, memkit_cli, tmp_path):
    feed = tmp_path / "feed.jsonl"
    feed.write_text("".join(json.dumps(d) + "\n" for d in DOCS) + "{\"no_text\": 1}\n")
    cli = memkit_cli(tmp_path / "unused-store")            # --store is not read with --server
    result = cli("ingest", "--server", served.url, str(feed))
    assert result.exit_code == 1, result.output              # one line refused, as a local ingest says
    assert "ingested 2 document(s)" in result.stdout and f"through {served.url}" in result.stdout
    assert "refused:" in result.stderr and "'text'" in result.stderr
    again = cli("ingest", "--server", served.url, "--json", str(feed))
    assert json.loads(again.stdout)["duplicates"] == 2

    asked = cli("ask", "--server", served.url, "--json", "--as-of", "2022-01-01", "Who keeps bees above Varda?")
    assert asked.exit_code == 0, asked.output
    data = json.loads(asked.stdout)
    with served.client() as http:
        direct = http.post("/collections/default/ask", json={"question": "Who keeps bees above Varda?",
                                                              "as_of": "2022-01-01"}).json()
    assert data["answer"] == direct["answer"]
    assert [s["external_id"] for s in data["sources"]] == ["k1"]       # k2 is later than as_of
    shown = cli("ask", "--server", served.url, "Who keeps bees above Varda?")
    assert shown.exit_code == 0 and "id k1" in shown.stdout and "sources:" in shown.stdout


def test_a_refused_request_and_an_unreachable_server_are_one_line(served, memkit_cli, tmp_path):
    cli = memkit_cli(tmp_path / "unused-store")
    missing = cli("ask", "--server", served.url, "--collection", "nope", "anything?")
    assert missing.exit_code == 2
    assert "refused the request (404)" in missing.stderr and "no collection 'nope'" in missing.stderr
    gone = cli("ask", "--server", "http://127.0.0.1:9", "anything?")
    assert gone.exit_code == 3 and "cannot reach the memkit server at http://127.0.0.1:9" in gone.stderr
    assert "Traceback" not in gone.stderr + missing.stderr
