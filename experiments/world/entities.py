"""The entities of the synthetic world, their facts and dated changes, and how a world is built from a config.

Owns: ``WorldConfig`` (every knob of the world, validated in one place), ``Person``, ``Organisation``,
``Update`` and ``World``, and ``build_world``, which gives every person and organisation to exactly one split.
Each split is drawn from its own random stream and its own share of the names, so a split's entities do not
change when another split's size does. Knows nothing of documents, templates or questions.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta

from experiments.world.names import (
    BANK_INDUSTRY,
    SPLITS,
    Pools,
    build_pools,
    org_names,
    person_names,
)

UPDATABLE = ("home_city", "employer")            # the attributes that change over time
PERSON_ATTRIBUTES = ("birth_year", "birth_city", "home_city", "employer", "occupation", "hobby")
ORG_ATTRIBUTES = ("hq_city", "founded_year", "industry", "leader")
BIRTH_YEARS = (1940, 2002)
FOUNDED_YEARS = (1850, 2015)
MIN_GAP_DAYS = 30                                 # the least time between two events of one person


@dataclass
class WorldConfig:
    """Everything that decides a world; the same config always builds the same world.

    seed: picks entities, attribute values, dates, templates and phrasings (--seed).
    n_pretrain, n_train, n_test: persons per split (--n-pretrain, --n-train, --n-test). Pretrain facts go into
        the base LM's pretraining; train entities are for training adapters and compressors; test entities
        are never in any training.
    persons_per_org: each split gets ceil(n / persons_per_org) organisations (--persons-per-org).
    update_prob: chance that a person has dated updates (a move or a job change) (--update-prob).
    max_updates: a person with updates has between 1 and this many (--max-updates).
    start_date: the earliest date of a biography (ISO).
    update_start: updates happen on or after this date, biographies before it (ISO).
    end_date: the last date of the world; updates and as-of dates stay at least a month before it (ISO).
    pool_seed: picks the invented names and cities themselves; keep it fixed for as long as a tokenizer or LM
        trained on the world is in use, since changing it changes the vocabulary of names.
    """

    seed: int = 0
    n_pretrain: int = 300
    n_train: int = 3000
    n_test: int = 1200
    persons_per_org: int = 10
    update_prob: float = 0.3
    max_updates: int = 2
    start_date: str = "2015-01-01"
    update_start: str = "2021-01-01"
    end_date: str = "2024-12-31"
    pool_seed: int = 0

    def n_persons(self, split: str) -> int:
        return {"pretrain": self.n_pretrain, "train": self.n_train, "test": self.n_test}[split]

    def n_orgs(self, split: str) -> int:
        n = self.n_persons(split)
        return -(-n // self.persons_per_org) if n else 0

    def validate(self) -> None:
        """Raise ValueError naming the first bad field and the flag that sets it."""
        for split in SPLITS:
            if self.n_persons(split) < 0:
                raise ValueError(f"n_{split} must be >= 0 (--n-{split})")
        if sum(self.n_persons(s) for s in SPLITS) == 0:
            raise ValueError("the world has no persons; set --n-pretrain, --n-train or --n-test above 0")
        if self.persons_per_org < 1:
            raise ValueError("persons_per_org must be >= 1 (--persons-per-org)")
        if not 0.0 <= self.update_prob <= 1.0:
            raise ValueError("update_prob must be between 0 and 1 (--update-prob)")
        if self.max_updates < 1:
            raise ValueError("max_updates must be >= 1 (--max-updates)")
        days = {}
        for name in ("start_date", "update_start", "end_date"):
            try:
                days[name] = date.fromisoformat(getattr(self, name))
            except (TypeError, ValueError):
                raise ValueError(f"{name} must be an ISO date like 2021-01-01, not {getattr(self, name)!r}") from None
        if not days["start_date"] < days["update_start"]:
            raise ValueError("start_date must come before update_start")
        room = (days["end_date"] - days["update_start"]).days
        if room < MIN_GAP_DAYS * (self.max_updates + 2):
            raise ValueError(f"end_date leaves {room} days after update_start; {self.max_updates} updates "
                             f"need at least {MIN_GAP_DAYS * (self.max_updates + 2)} (or lower --max-updates)")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Update:
    """From ``date`` on, ``attribute`` of a person holds ``value`` (a city name, or an organisation id)."""

    date: str
    attribute: str
    value: str


@dataclass
class Person:
    """A fictional person. ``home_city`` and ``employer`` are the values the biography states; ``updates``
    (in date order) change them later. ``employer`` is an organisation id of the same split."""

    id: str
    name: str
    split: str
    pronoun: str                    # "she" or "he"
    birth_year: int
    birth_city: str
    home_city: str
    employer: str
    occupation: str
    hobby: str
    bio_date: str                   # the biography's date; every update comes later
    updates: list[Update] = field(default_factory=list)

    def history(self, attribute: str) -> list[tuple[str, str]]:
        """(from date, value) pairs of ``attribute``, oldest first, starting with the biography's value."""
        first = (self.bio_date, str(getattr(self, attribute)))
        return [first] + [(u.date, u.value) for u in self.updates if u.attribute == attribute]

    def value_at(self, attribute: str, when: str) -> str:
        """The value of ``attribute`` on the ISO date ``when`` (an update counts from its own date on)."""
        value = str(getattr(self, attribute))
        for since, new in self.history(attribute):
            if since <= when:
                value = new
        return value

    def current(self, attribute: str) -> str:
        return self.history(attribute)[-1][1]


@dataclass
class Organisation:
    """A fictional organisation; ``leader`` is an invented person name that names no ``Person``."""

    id: str
    name: str
    split: str
    hq_city: str
    founded_year: int
    industry: str
    leader: str


@dataclass
class World:
    config: WorldConfig
    persons: list[Person]
    orgs: list[Organisation]

    def __post_init__(self) -> None:
        self._persons = {p.id: p for p in self.persons}
        self._orgs = {o.id: o for o in self.orgs}

    def person(self, pid: str) -> Person:
        return self._persons[pid]

    def org(self, oid: str) -> Organisation:
        return self._orgs[oid]

    def split_persons(self, split: str) -> list[Person]:
        return [p for p in self.persons if p.split == split]

    def split_orgs(self, split: str) -> list[Organisation]:
        return [o for o in self.orgs if o.split == split]


def _day(rng: random.Random, first: date, last: date) -> date:
    return first + timedelta(days=rng.randint(0, (last - first).days))


def _update_dates(rng: random.Random, k: int, first: date, last: date) -> list[str]:
    """``k`` sorted dates in [first, last], at least MIN_GAP_DAYS apart."""
    span = (last - first).days - MIN_GAP_DAYS * (k - 1)
    offsets = sorted(rng.randint(0, span) for _ in range(k))
    return [(first + timedelta(days=o + i * MIN_GAP_DAYS)).isoformat() for i, o in enumerate(offsets)]


def _orgs_for(split: str, config: WorldConfig, pools: Pools, rng: random.Random,
              leaders: list[str]) -> list[Organisation]:
    n = config.n_orgs(split)
    available = org_names(pools, split)
    if n > len(available):
        raise ValueError(f"{split} needs {n} organisations but its share of organisation names holds "
                         f"{len(available)}; lower --n-{split} or raise --persons-per-org")
    orgs = []
    for i, name in enumerate(rng.sample(available, n)):
        industry = BANK_INDUSTRY if name.startswith("Bank of") else rng.choice(
            [x for x in pools.industries if x != BANK_INDUSTRY])
        orgs.append(Organisation(
            id=f"{split}-o{i:04d}", name=name, split=split, hq_city=rng.choice(pools.cities),
            founded_year=rng.randint(*FOUNDED_YEARS), industry=industry, leader=leaders[i]))
    return orgs


def _persons_for(split: str, config: WorldConfig, pools: Pools, rng: random.Random,
                 names: list[tuple[str, str]], orgs: list[Organisation]) -> list[Person]:
    start, update_start = date.fromisoformat(config.start_date), date.fromisoformat(config.update_start)
    last_update = date.fromisoformat(config.end_date) - timedelta(days=MIN_GAP_DAYS)
    org_ids = [o.id for o in orgs]
    persons = []
    for i, (name, pronoun) in enumerate(names):
        birth_city = rng.choice(pools.cities)
        person = Person(
            id=f"{split}-p{i:05d}", name=name, split=split, pronoun=pronoun,
            birth_year=rng.randint(*BIRTH_YEARS), birth_city=birth_city,
            home_city=rng.choice([c for c in pools.cities if c != birth_city]),
            employer=rng.choice(org_ids), occupation=rng.choice(pools.occupations),
            hobby=rng.choice(pools.hobbies),
            bio_date=_day(rng, start, update_start - timedelta(days=1)).isoformat())
        if rng.random() < config.update_prob:
            k = rng.randint(1, config.max_updates)
            for when in _update_dates(rng, k, update_start, last_update):
                attribute = rng.choice(UPDATABLE) if len(org_ids) > 1 else "home_city"
                choices = pools.cities if attribute == "home_city" else org_ids
                old = person.value_at(attribute, when)
                person.updates.append(Update(when, attribute, rng.choice([c for c in choices if c != old])))
        persons.append(person)
    return persons


def build_world(config: WorldConfig | None = None) -> World:
    """Every person and organisation of every split, deterministically from ``config``."""
    config = config or WorldConfig()
    config.validate()
    pools = build_pools(config.pool_seed)
    persons: list[Person] = []
    orgs: list[Organisation] = []
    for split in SPLITS:
        rng = random.Random(f"memkit-world:{config.seed}:{split}")
        n, n_orgs = config.n_persons(split), config.n_orgs(split)
        available = person_names(pools, split)
        if n + n_orgs > len(available):
            raise ValueError(f"{split} needs {n + n_orgs} names (persons and leaders) but its share holds "
                             f"{len(available)}; lower --n-{split}")
        names = rng.sample(available, n + n_orgs)
        split_orgs = _orgs_for(split, config, pools, rng, [nm for nm, _ in names[n:]])
        persons += _persons_for(split, config, pools, rng, names[:n], split_orgs)
        orgs += split_orgs
    return World(config=config, persons=persons, orgs=orgs)
