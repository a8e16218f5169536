"""Building the world: validated config, determinism, disjoint splits, consistent employers and updates."""

from __future__ import annotations

import dataclasses

import pytest

from experiments.world.entities import MIN_GAP_DAYS, WorldConfig, build_world
from experiments.world.names import SPLITS
from experiments.world.questions import questions
from experiments.world.render import documents

from worldhelpers import SMALL


@pytest.mark.parametrize("field, value, flag", [
    ("n_test", -1, "--n-test"), ("persons_per_org", 0, "--persons-per-org"),
    ("update_prob", 1.5, "--update-prob"), ("max_updates", 0, "--max-updates"),
    ("end_date", "2021-02-01", "--max-updates"), ("start_date", "soon", "start_date"),
])
def test_bad_config_names_the_flag(field, value, flag):
    with pytest.raises(ValueError, match=flag):
        build_world(dataclasses.replace(SMALL, **{field: value}))


def test_too_many_persons_for_the_names_is_refused():
    with pytest.raises(ValueError, match="--n-train"):
        build_world(dataclasses.replace(SMALL, n_train=20_000, persons_per_org=1000))


def test_same_seed_same_world_and_another_seed_another(small_world):
    again = build_world(SMALL)
    assert again.persons == small_world.persons and again.orgs == small_world.orgs
    other = build_world(dataclasses.replace(SMALL, seed=SMALL.seed + 1))
    assert [p.name for p in other.persons] != [p.name for p in small_world.persons]


def test_a_split_does_not_change_when_another_grows(small_world):
    bigger = build_world(dataclasses.replace(SMALL, n_test=SMALL.n_test + 30))
    for split in ("pretrain", "train"):
        assert bigger.split_persons(split) == small_world.split_persons(split)
        assert bigger.split_orgs(split) == small_world.split_orgs(split)


def test_splits_are_disjoint_and_names_unique(small_world):
    persons, orgs = small_world.persons, small_world.orgs
    leaders = [o.leader for o in orgs]
    all_names = [p.name for p in persons] + leaders + [o.name for o in orgs]
    assert len(all_names) == len(set(all_names))
    assert len({p.id for p in persons} | {o.id for o in orgs}) == len(persons) + len(orgs)
    for split in SPLITS:
        assert len(small_world.split_persons(split)) == SMALL.n_persons(split)
        assert len(small_world.split_orgs(split)) == SMALL.n_orgs(split)


def test_employers_are_of_the_same_split_and_updates_are_ordered(small_world):
    updated = 0
    for p in small_world.persons:
        assert p.home_city != p.birth_city
        for value in [p.employer] + [u.value for u in p.updates if u.attribute == "employer"]:
            assert small_world.org(value).split == p.split
        dates = [p.bio_date] + [u.date for u in p.updates]
        assert dates == sorted(dates) and p.bio_date < SMALL.update_start
        assert all(u.date >= SMALL.update_start for u in p.updates)
        for attribute in ("home_city", "employer"):
            values = [v for _, v in p.history(attribute)]
            assert all(a != b for a, b in zip(values, values[1:]))
        updated += bool(p.updates)
    share = updated / len(small_world.persons)
    assert 0.35 < share < 0.65          # update_prob 0.5


def test_updates_are_a_month_apart(small_world):
    from datetime import date
    for p in small_world.persons:
        days = [date.fromisoformat(u.date) for u in p.updates]
        assert all((b - a).days >= MIN_GAP_DAYS for a, b in zip(days, days[1:]))


def test_default_world_has_the_promised_sizes():
    world = build_world(WorldConfig())
    docs, qs = documents(world, "test"), questions(world, "test")
    assert len(world.split_persons("test")) == 1200 and len(world.split_orgs("test")) == 120
    assert len(docs) >= 1000 and len(qs) >= 5000
