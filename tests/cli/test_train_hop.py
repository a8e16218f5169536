"""``memkit train hop``: fits the second retrieval hop's model from benchmarks with two-document questions, saves it
where the methods' ``hop_model`` option reads it, and refuses what it cannot fit on in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from memkit.embedders import LexicalEmbedder
from memkit.errors import ConfigError
from memkit.hops import HopModel

ENGLISH = Path(__file__).resolve().parents[2] / "experiments" / "data" / "english"


def test_a_hop_model_fitted_on_the_english_set_loads_for_lexical_keys_and_reports_its_fit(memkit, tmp_path):
    out = tmp_path / "hop"
    report = memkit.json("train", "hop", "--data", f"english:{ENGLISH}", "--eval-data", f"english:{ENGLISH}",
                         "--threshold", "0.7", "--out", out)
    questions = sum(1 for line in (ENGLISH / "questions.jsonl").read_text().splitlines() if line.strip())
    assert report["fit"]["questions"] == questions and report["fit"]["data"] == [f"english:{ENGLISH}"]
    assert 0 < report["fit"]["needs_hop"] < questions              # some, not all, questions need a second search
    measured = report["measured"][f"english:{ENGLISH}"]
    assert measured["all"]["questions"] == questions and "two_doc" in measured
    assert measured["two_doc"]["first_hop_misses"] > measured["single"]["first_hop_misses"]

    model = HopModel.load(out, LexicalEmbedder())
    assert model.config.threshold == 0.7 and model.config.lam == report["fit"]["lam"]
    saved = json.loads((out / "hop.json").read_text())
    assert saved["fit"]["threshold"] == 0.7 and f"english:{ENGLISH}" in saved["measured"]
    with pytest.raises(ConfigError, match="fitted among the keys of"):
        HopModel.load(out, LexicalEmbedder(idf=False))               # a store keyed otherwise refuses it
    gates = model.gate(np.asarray(LexicalEmbedder().embed(["Where is it?"]), np.float32))
    assert 0.0 <= float(gates[0]) <= 1.0


@pytest.mark.parametrize("args,message", [
    (["--data", "jsonl:{tmp}/qa.jsonl"], "the generic jsonl format has neither"),
    (["--data", "nonsense:x"], "--data"),
    (["--embedder", "lm"], "--embedder lm keys by a language model's states"),
    (["--data", f"english:{ENGLISH}", "--threshold", "1.5"], "--threshold must lie between 0 and 1"),
    (["--data", "english:/nowhere/at/all"], "no such file or directory /nowhere/at/all"),
])
def test_what_a_hop_model_cannot_be_fitted_on_is_refused_in_one_line(memkit, tmp_path, args, message):
    (tmp_path / "qa.jsonl").write_text('{"context": "A text.", "qa": [{"question": "Q?", "answer": "A"}]}\n')
    result = memkit("train", "hop", *[a.format(tmp=tmp_path) for a in args], "--out", tmp_path / "hop")
    assert result.exit_code != 0 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "hop").exists()


def test_only_a_model_among_lexical_keys_installs_as_the_worlds(tmp_path):
    from experiments.world.recipes import install_hop
    from memkit.hops import HopConfig

    out = tmp_path / "hop"
    HopModel(HopConfig(embedder=LexicalEmbedder(idf=False).describe(), dim=8)).save(out)
    with pytest.raises(ConfigError, match="lives among the lexical keys"):
        install_hop(out)
