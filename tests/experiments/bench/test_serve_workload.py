"""The serve benchmark's workload choice (``--benchmark``, ``--data``): the world as before, memkit's English set
stored whole or in part, only the questions its stored documents answer, fresh documents that are new to the
store; no server is started and no model is loaded."""

from __future__ import annotations

import pytest

from experiments.bench.benchmarks import ENGLISH_DATA
from experiments.bench.serve import main
from experiments.bench.serve_common import BenchError
from experiments.bench.serve_report import markdown
from experiments.bench.serve_world import choose_workload, world_workload
from memkit.datasets.loaders import load_benchmark

DATA = str(ENGLISH_DATA)


@pytest.fixture(scope="module")
def english():
    return load_benchmark("english", ENGLISH_DATA)


def test_the_world_workload_is_unchanged_and_records_nothing_more():
    chosen, world = choose_workload("world", None, 0, 20, 16), world_workload(0, 20, 16)
    assert chosen == world and chosen.about == {}
    assert len(chosen.stored) == 20 and len(chosen.ingest_alone) == len(chosen.ingest_loaded) == 16


def test_english_stores_its_first_documents_and_asks_only_what_they_answer(english):
    work = choose_workload("english", DATA, 0, 10, 3)
    assert [d["id"] for d in work.stored] == [d.external_id for d in english.documents[:10]]
    assert work.stored[0]["text"] == english.documents[0].text and work.stored[0]["timestamp"]
    held = {d.external_id for d in english.documents[:10]}
    answered = {q.question for q in english.questions if set(q.doc_ids) <= held}
    asked = {q["question"] for q in work.questions}
    assert asked == answered and 0 < len(asked) < len(english.questions)
    assert work.about["stored"] == 10 and work.about["all_documents_stored"] is False
    assert work.about["fresh"] == {"unstored_documents": 6, "marked_copies": 0,
                                   "rule": "the dataset's unstored documents in order"}
    assert [d["id"] for d in work.ingest_alone + work.ingest_loaded] == \
        [d.external_id for d in english.documents[10:16]]


def test_english_beyond_its_documents_stores_them_all_and_ingests_marked_copies(english):
    work = choose_workload("english", DATA, 0, 200, 100, max_questions=10_000)
    n = len(english.documents)
    assert len(work.stored) == n and len({q["question"] for q in work.questions}) == len(
        {q.question for q in english.questions})
    about = work.about
    assert about["n_docs_asked"] == 200 and about["stored"] == n and about["all_documents_stored"] is True
    assert about["fresh"]["unstored_documents"] == 0 and about["fresh"]["marked_copies"] == 200
    assert "[memkit bench copy k]" in about["fresh"]["rule"]

    fresh = work.ingest_alone + work.ingest_loaded
    assert len(work.ingest_alone) == len(work.ingest_loaded) == 100
    stored_texts, stored_ids = {d["text"] for d in work.stored}, {d["id"] for d in work.stored}
    assert not {d["text"] for d in fresh} & stored_texts and not {d["id"] for d in fresh} & stored_ids
    assert len({d["text"] for d in fresh}) == len({d["id"] for d in fresh}) == 200
    first, later = fresh[0], fresh[n]
    assert first["id"] == f"{english.documents[0].external_id}~copy1"
    assert first["text"] == f"[memkit bench copy 1]\n{english.documents[0].text}"
    assert later["text"] == f"[memkit bench copy 2]\n{english.documents[0].text}"


def test_a_dataset_without_data_is_refused_naming_data(capsys):
    with pytest.raises(BenchError, match="--data PATH"):
        choose_workload("english", None, 0, 10, 3)
    assert main(["--benchmark", "english", "--methods", "rag", "--quick"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --benchmark english") and "--data" in err and len(err.strip().splitlines()) == 1


def test_model_given_twice_is_refused(capsys):
    assert main(["--benchmark", "english", "--data", DATA, "--model", "gemma-3-270m",
                 "--init-arg=--model", "--init-arg=other", "--quick"]) == 2
    assert "--model and --init-arg --model" in capsys.readouterr().err


def test_the_report_names_the_dataset_and_the_documents_stored():
    result = {"seed": 0, "machine": {"cpu_count": 2}, "config": {"n_docs": 200}, "methods": {}}
    assert markdown(result).startswith("## memkit serve benchmark (seed 0, 2 CPUs, 200 documents)")
    result["workload"] = {"benchmark": "english", "stored": 64}
    assert markdown(result).startswith("## memkit serve benchmark (english, seed 0, 2 CPUs, 64 documents)")


def test_a_cold_start_server_gets_its_own_empty_model_cache(tmp_path, monkeypatch):
    from experiments.bench.serve_process import ServerProcess

    monkeypatch.setenv("MEMKIT_CACHE_DIR", "/warm/cache")
    cold = ServerProcess(tmp_path / "store", "cpu", [], threads=1, env={"MEMKIT_CACHE_DIR": str(tmp_path / "c")})
    warm = ServerProcess(tmp_path / "store", "cpu", [], threads=1)
    assert cold.environment()["MEMKIT_CACHE_DIR"] == str(tmp_path / "c")
    assert warm.environment()["MEMKIT_CACHE_DIR"] == "/warm/cache"
    assert cold.environment()["OMP_NUM_THREADS"] == "1"
