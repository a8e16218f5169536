"""The second retrieval hop: a hop model fitted on banks of bridged documents opens its gate for questions that
cross two documents and not for questions about one, finds the second document from the first one's sentences,
and the engine hands it to the method with its hop, at the first document's weight."""

from __future__ import annotations

import random

import numpy as np
import pytest

from memkit.datasets.records import BenchQuestion, Benchmark, bench_document
from memkit.documents import SourceDocument
from memkit.embedders import LexicalEmbedder
from memkit.engine import Engine
from memkit.errors import ConfigError
from memkit.hops import HopModel, fit_hop_model, sentences
from memkit.methods import build_method
from memkit.recipes.hop import bank_of, second_hop_recall
from storage import Store

FIRST = ["Ada", "Bo", "Cy", "Di", "Ed", "Flo", "Gus", "Hal", "Ivo", "Jo", "Kai", "Lu", "Mo", "Ned", "Ola", "Pim"]
LAST = ["Varn", "Kell", "Rone", "Mott", "Pell", "Sorn", "Tave", "Ulm", "Wick", "Yarr"]
SYLLABLES = ["bran", "cor", "das", "elm", "fen", "gor", "har", "is", "jor", "kes", "lom", "mar", "nel", "ost",
             "pra", "quen", "ros", "tav", "ul", "vin"]
CITIES = ["Aldvik", "Brivik", "Calder", "Dunmere", "Esk", "Farrow", "Gilford", "Harnby", "Istow", "Jessel"]
THINGS = ["garden", "kitchen", "hallway", "attic", "porch", "cellar", "orchard", "library", "stable", "workshop"]
STATES = ["full of roses", "quiet on Sundays", "painted blue", "warm in winter", "busy at dawn", "lit by lamps",
          "cold in spring", "never locked", "newly swept", "smelling of bread"]


def filler(rng: random.Random) -> str:
    """A sentence of everyday detail (a hundred of them, so few documents share one)."""
    return f"The {rng.choice(THINGS)} is {rng.choice(STATES)}."


def world_bench(seed: int) -> Benchmark:
    """Persons who live somewhere and work for an organisation; organisations based in a city. Single questions
    ask a person's city; bridge questions the city of a person's employer (only its overview names it)."""
    rng = random.Random(seed)
    docs, questions = [], []
    names = {"".join(rng.sample(SYLLABLES, 3)).title() for _ in range(12)}
    orgs = []
    for k, word in enumerate(sorted(names)):
        org, city = f"{word} {rng.choice(['Trust', 'Bank', 'Works'])}", rng.choice(CITIES)
        docs.append(bench_document(id=f"org{k}", text=f"{org}: an overview. {org} is based in {city}. It was "
                                                    f"founded long ago and keeps an archive of ledgers. "
                                                    f"{filler(rng)}"))
        orgs.append((org, city))
    for p in range(60):
        name = f"{FIRST[p % len(FIRST)]} {LAST[(p * 7 + seed) % len(LAST)]}{p}"
        home = rng.choice(CITIES)
        k = rng.randrange(len(orgs))
        org, org_city = orgs[k]
        details = [filler(rng) for _ in range(3)]
        docs.append(bench_document(id=f"p{p}", text=f"Some notes on {name}. {details[0]} {name} lives in {home}. "
                                                    f"{details[1]} {name}'s employer is {org}. {details[2]}"))
        questions.append(BenchQuestion(id=f"s{p}", question=f"Where does {name} live?", answers=[home],
                                       doc_ids=[f"p{p}"], type="single"))
        questions.append(BenchQuestion(id=f"t{p}", question=f"In which city is the headquarters of the "
                                                            f"organisation {name} works for?",
                                       answers=[org_city], doc_ids=[f"p{p}", f"org{k}"], type="two_hop"))
    return Benchmark(name=f"bridges-{seed}", documents=docs, questions=questions)


@pytest.fixture(scope="module")
def fitted():
    emb = LexicalEmbedder()
    banks = [bank_of(world_bench(seed), emb)[0] for seed in (1, 2, 3)]
    return fit_hop_model(banks, emb.describe(), first_k=2, reach_k=6)


def test_sentences_cut_at_sentence_ends():
    assert sentences("One. Two? Three!  Four") == ["One.", "Two?", "Three!", "Four"]
    assert sentences("no end") == ["no end"] and sentences("  ") == []


def test_the_fitted_gate_opens_for_bridge_questions_and_the_hop_finds_the_second_document(fitted):
    model, fit = fitted
    assert fit.needs_hop > 0 and fit.recall_at_1 > 0.8 and fit.lam in (0.25, 0.5, 1.0, 2.0)
    bank, types = bank_of(world_bench(7), LexicalEmbedder())          # a bank it was not fitted on
    assert model.config.threshold == 0.8                               # the default: fewer false openings
    strict = second_hop_recall(model, bank, types, first_k=2)
    model.config.threshold, threshold = 0.5, model.config.threshold
    try:
        scores = second_hop_recall(model, bank, types, first_k=2)
    finally:
        model.config.threshold = threshold
    assert scores["two_hop"]["gate_opens"] >= 90 and scores["single"]["gate_opens"] <= 10
    assert strict["single"]["gate_opens"] <= scores["single"]["gate_opens"]
    assert 80 <= strict["two_hop"]["gate_opens"] <= scores["two_hop"]["gate_opens"]
    assert scores["two_hop"]["second_document_recall_at_1"] >= 80
    # without the prior (lam 0) the sentence alone finds the colleagues who share the employer's name
    model.config.lam, lam = 0.0, model.config.lam
    try:
        blind = second_hop_recall(model, bank, types, first_k=2)["two_hop"]["second_document_recall_at_1"]
    finally:
        model.config.lam = lam
    assert blind < scores["two_hop"]["second_document_recall_at_1"]


def test_a_hop_model_saves_loads_and_refuses_other_keys(fitted, tmp_path):
    model, _ = fitted
    model.save(tmp_path / "hop")
    again = HopModel.load(tmp_path / "hop", LexicalEmbedder())
    keys = np.random.default_rng(0).normal(size=(3, model.config.dim)).astype(np.float32)
    np.testing.assert_allclose(again.gate(keys), model.gate(keys), rtol=1e-6)
    assert again.config.lam == model.config.lam
    with pytest.raises(ConfigError, match="fitted among the keys"):
        HopModel.load(tmp_path / "hop", LexicalEmbedder(dim=1024))


def test_fitting_without_questions_that_cross_documents_is_refused():
    emb = LexicalEmbedder()
    bench = world_bench(1)
    bench.questions = [q for q in bench.questions if q.type == "single"]
    with pytest.raises(ConfigError, match="two documents"):
        fit_hop_model([bank_of(bench, emb)[0]], emb.describe(), first_k=2, reach_k=6)


def _store(tiny_lm, tmp_path, method: str, options: dict):
    built = build_method(method, tiny_lm, options)
    store = Store.create(tmp_path / "store", model_id=tiny_lm.name, model_revision=None,
                         model_fingerprint=tiny_lm.fingerprint, method=built.name,
                         method_config=built.config_dict(), key_dim=built.key_dim)
    engine = Engine(tiny_lm, built, store)
    bench = world_bench(7)
    engine.ingest([SourceDocument(text=d.text, source=d.external_id) for d in bench.documents])
    return engine, bench


@pytest.mark.parametrize("method", ["rag", "adapter", "slots", "hybrid"])
def test_the_engine_adds_the_second_document_with_its_hop_and_the_first_ones_weight(
        fitted, tiny_lm, tmp_path, method, tiny_generator_dir, tiny_slot_dir):
    model, _ = fitted
    model.save(tmp_path / "hop")
    options = {"hop_model": str(tmp_path / "hop"), "top_k" if method in ("rag", "slots") else "top_n": 2}
    if method == "rag":                  # whole documents as memories, the keys the hop model was fitted among
        options.update(chunk_tokens=200, chunk_overlap=0)
    if method in ("adapter", "hybrid"):
        options["generator"] = str(tiny_generator_dir)
    if method in ("slots", "hybrid"):    # found by words, the keys the hop model lives among
        options.update(model=str(tiny_slot_dir), keys="lexical", top_k=2)
    engine, bench = _store(tiny_lm, tmp_path, method, options)
    try:
        bridge = [q for q in bench.questions if q.type == "two_hop"][:6]
        single = [q for q in bench.questions if q.type == "single"][:6]
        found = 0
        for q, hits in zip(bridge, engine.retrieve_many([q.question for q in bridge], 2)):
            second = [h for h in hits if h.hop == 2]
            assert len(second) == 1 and hits[0].hop == 1 and second[0].score == hits[0].score
            found += second[0].source == q.doc_ids[1]
        assert found >= 5
        assert all(h.hop == 1 for hits in engine.retrieve_many([q.question for q in single], 2) for h in hits)
        if method == "adapter":          # the answer merges the second document at the first one's weight
            for q, a in zip(bridge, engine.ask_many([q.question for q in bridge])):
                second = [s for s in a.sources if s.hop == 2]
                assert len(second) == 1 and second[0].weight == pytest.approx(a.sources[0].weight)
                assert second[0].to_dict()["hop"] == 2
        if method in ("slots", "hybrid"):  # the second document's memories are aggregated with the first's
            for q, a in zip(bridge, engine.ask_many([q.question for q in bridge])):
                assert [s.hop for s in a.sources].count(2) == 1 and a.notes.memories == 3
        # one search only without a hop model
        plain = build_method(method, tiny_lm, {k: v for k, v in options.items() if k != "hop_model"})
        engine_one = Engine(tiny_lm, plain, engine.store)
        assert all(s.hop == 1 for a in engine_one.ask_many([q.question for q in bridge]) for s in a.sources)
    finally:
        engine.store.close()


def test_the_hybrid_hops_only_among_the_adapters_keys(fitted, tiny_lm, tmp_path, tiny_generator_dir, tiny_slot_dir):
    model, _ = fitted
    model.save(tmp_path / "hop")
    with pytest.raises(ConfigError, match="keys=lexical"):
        build_method("hybrid", tiny_lm, {"hop_model": str(tmp_path / "hop"), "generator": str(tiny_generator_dir),
                                         "model": str(tiny_slot_dir)})
    with pytest.raises(ConfigError, match="keys=lexical"):
        build_method("slots", tiny_lm, {"hop_model": str(tmp_path / "hop"), "model": str(tiny_slot_dir)})
    hybrid = build_method("hybrid", tiny_lm, {"hop_model": str(tmp_path / "hop"), "keys": "lexical",
                                              "generator": str(tiny_generator_dir), "model": str(tiny_slot_dir)})
    assert hybrid.hop is not None


def test_a_second_hops_memory_comes_on_top_of_the_first_searchs_limit():
    from memkit.methods.base import Retrieved, best_first

    def hit(i, score, hop=1):
        return Retrieved(memory_id=i, document_id=i, score=score, kind="chunk", source=f"d{i}", span=None,
                         text="", hop=hop)

    got = best_first([hit(1, 0.9), hit(2, 0.5), hit(3, 0.7), hit(4, 0.9, hop=2)], 1)
    assert [r.memory_id for r in got] == [1, 4]
    got = best_first([hit(1, 0.9), hit(2, 0.5), hit(3, 0.7), hit(4, 0.9, hop=2)], 2)
    assert [r.memory_id for r in got] == [1, 4, 3]


def test_the_packaged_world_hop_model_opens_for_a_world_bridge_question_only(tiny_lm):
    from experiments.world.entities import WorldConfig
    from experiments.world.export import load_world_benchmark
    from memkit.packaged import WORLD_HOP, installed

    assert installed(WORLD_HOP)
    method = build_method("rag", tiny_lm, {"hop_model": "packaged"})
    bench = load_world_benchmark(WorldConfig(seed=5), "test")
    rng = random.Random(0)
    bench.questions = (rng.sample([q for q in bench.questions if q.type == "two_hop"], 60)
                       + rng.sample([q for q in bench.questions if q.type == "single"], 200))
    bank, types = bank_of(bench, LexicalEmbedder())
    opens = method.hop.fires(bank.question_keys)
    assert opens[:60].mean() >= 0.9 and opens[60:].mean() <= 0.1
