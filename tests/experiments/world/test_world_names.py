"""Name pools: fixed by their seed, prefix- and suffix-free, free of blocked words; names split by hash."""

from __future__ import annotations

import itertools

from experiments.world.names import (
    HOBBIES,
    INDUSTRIES,
    OCCUPATIONS,
    SPLITS,
    _BLOCKED,
    article,
    build_pools,
    org_names,
    person_names,
    split_of,
)


def test_pools_are_fixed_by_their_seed():
    a, b = build_pools.__wrapped__(0), build_pools.__wrapped__(0)
    assert a == b
    assert build_pools.__wrapped__(1).surnames != a.surnames


def test_name_words_are_unique_prefix_and_suffix_free_and_not_blocked():
    pools = build_pools(0)
    words = [*pools.female_first, *pools.male_first, *pools.cities, *pools.surnames, *pools.org_stems]
    assert len(words) == len(set(words))
    assert not [w for w in words if w.lower() in _BLOCKED]
    clashes = [(a, b) for a, b in itertools.permutations(words, 2) if a.startswith(b) or a.endswith(b)]
    assert not clashes, clashes[:5]
    assert len(pools.occupations) >= 40 and len(pools.hobbies) >= 30 and len(pools.cities) >= 50


def test_values_never_contain_one_another():
    values = [*OCCUPATIONS, *HOBBIES, *INDUSTRIES]
    assert len(values) == len(set(values))
    inside = [(a, b) for a, b in itertools.permutations(values, 2) if a in b]
    assert not inside, inside


def test_each_name_belongs_to_exactly_one_split_whatever_the_seed():
    pools = build_pools(0)
    shares = {s: set(person_names(pools, s)) for s in SPLITS}
    for a, b in itertools.combinations(SPLITS, 2):
        assert not shares[a] & shares[b]
        assert not set(org_names(pools, a)) & set(org_names(pools, b))
    name, _ = next(iter(shares["test"]))
    assert split_of(name) == "test"
    assert all(len(shares[s]) > 10_000 and len(org_names(pools, s)) > 600 for s in SPLITS)


def test_article():
    assert article("engineer") == "an engineer" and article("baker") == "a baker"
