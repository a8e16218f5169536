"""Several collections in one store from the CLI: ``memkit --collection NAME init`` adds one to an existing
store, every command reads the one ``--collection`` names, and a name that is taken or unknown is one line."""

from __future__ import annotations

from pgserver import on_both_databases


@on_both_databases
def test_a_second_collection_keeps_its_own_documents(rag_store, model_dir, tmp_path):
    (tmp_path / "a.txt").write_text("Ada Varn keeps the lighthouse of Port Elsin.")
    (tmp_path / "b.txt").write_text("Tomas Brell draws maps of Kessin.")
    assert rag_store("ingest", tmp_path / "a.txt").exit_code == 0
    added = rag_store("--collection", "maps", "init", "--model", model_dir, "--method", "prompt")
    assert added.exit_code == 0, added.output + added.stderr
    assert "added collection maps" in added.stdout
    assert rag_store("--collection", "maps", "ingest", tmp_path / "b.txt").exit_code == 0
    assert [d["source"] for d in rag_store.json("ls")] == [str(tmp_path / "a.txt")]
    assert [d["source"] for d in rag_store.json("--collection", "maps", "ls")] == [str(tmp_path / "b.txt")]
    assert rag_store.json("--collection", "maps", "stats")["method"] == "prompt"
    doctor = rag_store("--collection", "maps", "doctor")
    assert doctor.exit_code == 0, doctor.output + doctor.stderr


def test_a_taken_or_unknown_collection_is_one_line(rag_store, model_dir):
    again = rag_store("init", "--model", model_dir)
    assert again.exit_code == 3 and "store already exists" in again.stderr and "--collection NAME" in again.stderr
    bad = rag_store("--collection", "../up", "init", "--model", model_dir)
    assert bad.exit_code == 2 and "not allowed" in bad.stderr
    missing = rag_store("--collection", "nope", "ls")
    assert missing.exit_code == 3 and "no collection 'nope'" in missing.stderr and "'default'" in missing.stderr
    assert "Traceback" not in again.stderr + bad.stderr + missing.stderr
