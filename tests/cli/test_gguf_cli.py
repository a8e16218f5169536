"""A store built on a GGUF file: it records the file and its content hash, answers, and refuses another file."""

from __future__ import annotations

import hashlib

from experiments.tiny_model import write_tiny_gguf
from storage import Store


def test_store_on_a_gguf_file_answers_and_refuses_another_file(memkit, tmp_path, monkeypatch):
    monkeypatch.setenv("MEMKIT_CACHE_DIR", str(tmp_path / "cache"))
    model = write_tiny_gguf(tmp_path / "models" / "tiny.gguf", seed=0)
    other = write_tiny_gguf(tmp_path / "models" / "other.gguf", seed=1)

    made = memkit.json("init", "--model", model, "--method", "rag", "-o", "chunk_tokens=32")
    assert made["model"] == str(model.resolve())
    with Store.open(memkit.store) as store:
        assert store.info.model_id == str(model.resolve())
        assert store.info.model_fingerprint == "gguf-sha256:" + hashlib.sha256(model.read_bytes()).hexdigest()

    (tmp_path / "ada.txt").write_text("Ada Varn is a lighthouse keeper who lives in Port Elsin.")
    assert memkit.json("ingest", tmp_path / "ada.txt")["added"] == 1
    answer = memkit.json("ask", "Where does Ada Varn live?", "--top-k", "1")
    assert isinstance(answer["answer"], str) and len(answer["sources"]) == 1

    refused = memkit("ask", "Where does Ada Varn live?", "--model", other)
    assert refused.exit_code == 3 and "Traceback" not in refused.stderr
    assert f"was built with model {str(model.resolve())!r}, not {str(other.resolve())!r}" in refused.stderr
