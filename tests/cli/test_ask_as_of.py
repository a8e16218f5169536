"""``memkit ask --as-of``: only documents timestamped at or before the time are retrieved."""

from __future__ import annotations

import json

from pgserver import on_both_databases

DOCS = [("Ada Varn lives in Port Elsin.", "2020-01-01T00:00:00Z", "old"),
        ("Ada Varn lives in Dunmere.", "2023-06-01T12:00:00+02:00", "new"),
        ("Ada Varn once visited Harnby.", None, "undated")]


def ingest(rag_store, tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": t, "id": i, **({"timestamp": ts} if ts else {})}) + "\n"
                            for t, ts, i in DOCS))
    result = rag_store("ingest", path)
    assert result.exit_code == 0, result.stderr
    return rag_store


def sources(memkit, *extra) -> list[str]:
    answer = memkit.json("ask", "Where does Ada Varn live?", "--top-k", "3", *extra)
    return sorted(s["text"] if "text" in s else s["snippet"] for s in answer["sources"])


@on_both_databases
def test_as_of_keeps_only_documents_timestamped_before(rag_store, tmp_path):
    memkit = ingest(rag_store, tmp_path)
    everything = sources(memkit)
    assert len(everything) == 3
    assert sources(memkit, "--as-of", "2021-01-01") == ["Ada Varn lives in Port Elsin."]
    # the second document is 10:00 UTC: an hour before it, it is not yet there; at that moment it is
    assert sources(memkit, "--as-of", "2023-06-01T09:59:59Z") == ["Ada Varn lives in Port Elsin."]
    assert sources(memkit, "--as-of", "2023-06-01T10:00:00Z") == ["Ada Varn lives in Dunmere.",
                                                                  "Ada Varn lives in Port Elsin."]
    assert sources(memkit, "--as-of", "2019-12-31") == []


def test_a_bad_as_of_is_one_line(rag_store, tmp_path):
    memkit = ingest(rag_store, tmp_path)
    result = memkit("ask", "Where does Ada Varn live?", "--as-of", "last tuesday")
    assert result.exit_code == 2 and "not a date" in result.stderr and "Traceback" not in result.stderr
    assert "last tuesday" in result.stderr


def test_a_local_ask_shows_what_a_server_ask_shows(rag_store, tmp_path):
    """One answer view for both doors: a local ``ask`` names each source's external id and timestamp."""
    memkit = ingest(rag_store, tmp_path)
    answer = memkit.json("ask", "Where does Ada Varn live?", "--top-k", "3")
    by_id = {s["external_id"]: s for s in answer["sources"]}
    assert set(by_id) == {"old", "new", "undated"}
    assert by_id["new"]["timestamp"].startswith("2023-06-01T10:00:00") and by_id["undated"]["timestamp"] is None
    assert all("weight" in s for s in answer["sources"]) and answer["info"]["prompt_tokens"] > 0
    shown = memkit("ask", "Where does Ada Varn live?", "--top-k", "3").output
    assert "id old" in shown and "id new" in shown
