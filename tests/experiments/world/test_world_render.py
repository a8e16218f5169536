"""Documents: deterministic, varied, 80-400 tokens, dated in order, and no test name leaks into training text."""

from __future__ import annotations

import dataclasses
import random
import re
from collections import Counter

from experiments.tiny_model import build_tokenizer
from experiments.world import templates as T
from experiments.world.entities import build_world
from experiments.world.names import build_pools
from experiments.world.render import documents, render_bio, render_update

from worldhelpers import SMALL


def test_same_seed_same_documents_and_another_seed_others(small_docs):
    assert documents(build_world(SMALL)) == small_docs
    other = documents(build_world(dataclasses.replace(SMALL, seed=SMALL.seed + 1)))
    assert [d.text for d in other] != [d.text for d in small_docs]


def test_ids_unique_and_fields_set(small_docs):
    assert len({d.id for d in small_docs}) == len(small_docs)
    assert Counter(d.kind for d in small_docs).keys() == {"bio", "org", "update"}
    for d in small_docs:
        assert d.source == f"world:{d.kind}:{d.entity}" and d.text.strip()
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", d.timestamp)


def test_at_least_eight_bio_templates_in_a_hundred_bios(default_docs):
    bios = [d for d in default_docs if d.kind == "bio"][:100]
    assert len({d.template for d in bios}) >= 8


def test_bios_state_every_initial_fact_and_come_before_updates(small_world):
    for p in small_world.persons:
        bio = render_bio(small_world, p)
        for value in (str(p.birth_year), p.birth_city, p.home_city, small_world.org(p.employer).name,
                      p.occupation, p.hobby):
            assert value in bio.text
        assert p.name in bio.text and bio.timestamp == p.bio_date
        for i, u in enumerate(p.updates):
            notice = render_update(small_world, p, i)
            new = small_world.org(u.value).name if u.attribute == "employer" else u.value
            assert notice.timestamp == u.date > bio.timestamp
            assert u.date in notice.text and new in notice.text and p.name in notice.text


def test_sentence_order_varies(small_world):
    """The same fact sits at different places: its sentence index varies across biographies."""
    places = Counter()
    for p in small_world.persons[:60]:
        sentences = render_bio(small_world, p).text.split(". ")
        places[next(i for i, s in enumerate(sentences) if s.find(p.hobby) >= 0)] += 1
    assert len(places) >= 4


def test_fillers_and_frames_hold_no_fact_values():
    pools = build_pools(0)
    values = [*pools.cities, *pools.occupations, *pools.hobbies, *pools.industries, *pools.surnames,
              *pools.org_stems, *pools.female_first, *pools.male_first]
    texts = [*T.BIO_FILLERS, *T.ORG_FILLERS, *T.UPDATE_FILLERS, *T.UPDATE_OPENINGS]
    frames = T.BIO_FRAMES + T.ORG_FRAMES
    texts += [f.opening for f in frames] + [f.closing or "" for f in frames]
    for text in texts:
        assert not re.search(r"\d", text), text
        words = set(re.findall(r"[A-Za-z]+", text.lower()))
        assert not [v for v in values if v.lower() in words or (" " in v and v.lower() in text.lower())], text


def test_lengths_are_80_to_400_bpe_tokens(default_docs):
    """Measured with a byte-level BPE tokenizer (2048 tokens) trained on 1,500 world documents."""
    sample = random.Random(0).sample(default_docs, 1500)
    tok = build_tokenizer(2048, corpus=[d.text for d in sample])
    lengths = [len(ids) for ids in tok([d.text for d in default_docs])["input_ids"]]
    assert min(lengths) >= 80 and max(lengths) <= 400, (min(lengths), max(lengths))
    names = [" " + p.name for p in build_world(SMALL).persons]
    per_name = [len(ids) for ids in tok(names)["input_ids"]]
    assert sum(per_name) / len(per_name) <= 3.5


def test_no_test_name_appears_in_pretrain_or_train_text(default_world, default_docs):
    test_orgs = default_world.split_orgs("test")
    test_names = {p.name for p in default_world.split_persons("test")}
    test_names |= {o.name for o in test_orgs} | {o.leader for o in test_orgs}
    grams = set()
    for d in default_docs:
        if d.split != "test":
            words = re.findall(r"[A-Za-z]+", d.text)
            grams.update(" ".join(words[i:i + n]) for n in (2, 3) for i in range(len(words) - n + 1))
    assert not test_names & grams
    # The small world, checked by plain substring search.
    small = build_world(SMALL)
    training = " ".join(d.text for d in documents(small) if d.split != "test")
    names = [p.name for p in small.split_persons("test")] + [o.name for o in small.split_orgs("test")]
    assert not [n for n in names if n in training]
