"""Questions about the world with gold answers and the documents that hold them.

Owns: ``Question``, the question phrasings (three per fact and type) and the rules for which questions an
entity gets: ``single`` (one fact of a person or organisation, from its own document), ``current`` (a fact that
changed: the latest value, from the biography and its updates), ``as_of`` (the value on a date, one question
per period between changes) and ``two_hop`` (a fact of a person's employer: the biography, then the
organisation's document). Facts that change get ``current``/``as_of`` questions instead of ``single`` ones, and
persons who changed jobs get no ``two_hop`` question, so every gold answer is unambiguous.
Knows document ids but not document text; knows nothing of memkit.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from datetime import date, timedelta

from experiments.world.entities import ORG_ATTRIBUTES, PERSON_ATTRIBUTES, Organisation, Person, World
from experiments.world.names import SPLITS
from experiments.world.render import bio_id, org_id, update_id

QUESTION_TYPES = ("single", "current", "as_of", "two_hop")

PERSON_QUESTIONS = {
    "birth_year": ("In which year was {name} born?", "When was {name} born?",
                   "What is the birth year of {name}?"),
    "birth_city": ("Where was {name} born?", "In which city was {name} born?",
                   "What is the birthplace of {name}?"),
    "home_city": ("Where does {name} live?", "Which city does {name} live in?",
                  "What is the home city of {name}?"),
    "employer": ("Who does {name} work for?", "Which organisation employs {name}?",
                 "Who is the employer of {name}?"),
    "occupation": ("What does {name} do for a living?", "What is the occupation of {name}?",
                   "What is {name}'s job?"),
    "hobby": ("What is {name}'s hobby?", "What does {name} enjoy in spare moments?",
              "What is the favourite pastime of {name}?"),
}

ORG_QUESTIONS = {
    "hq_city": ("Where is {name} based?", "In which city is {name} headquartered?",
                "Where are the headquarters of {name}?"),
    "founded_year": ("When was {name} founded?", "In which year was {name} founded?",
                     "What year was {name} established?"),
    "industry": ("What industry is {name} in?", "What line of business is {name} in?",
                 "Which trade is {name} active in?"),
    "leader": ("Who leads {name}?", "Who is the head of {name}?", "Who runs {name}?"),
}

AS_OF_QUESTIONS = {
    "home_city": ("Where did {name} live on {date}?", "Which city did {name} live in on {date}?",
                  "As of {date}, where did {name} live?"),
    "employer": ("Who did {name} work for on {date}?", "Which organisation employed {name} on {date}?",
                 "As of {date}, who employed {name}?"),
}

TWO_HOP_QUESTIONS = {
    "hq_city": ("In which city is the headquarters of the organisation {name} works for?",
                "Where is the employer of {name} based?",
                "In which city is {name}'s employer headquartered?"),
    "founded_year": ("When was the organisation {name} works for founded?",
                     "In which year was {name}'s employer founded?",
                     "What year was the employer of {name} established?"),
    "industry": ("What industry is {name}'s employer in?",
                 "What line of business is the organisation {name} works for in?",
                 "Which trade is the employer of {name} active in?"),
    "leader": ("Who leads the organisation {name} works for?", "Who is the head of {name}'s employer?",
               "Who runs the organisation that employs {name}?"),
}


@dataclass
class Question:
    """One question. ``answers[0]`` is the canonical answer, the rest accepted aliases; ``doc_ids`` are the
    gold documents in reading order, the last of which states the answer."""

    id: str
    question: str
    answers: list[str]
    type: str
    entity: str
    attribute: str
    doc_ids: list[str]
    split: str
    template: int
    date: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def answers_for(value: str) -> list[str]:
    """The canonical answer and its natural aliases ("playing the lute" also accepts "the lute" and "lute")."""
    if value.startswith("playing the "):
        return [value, value[len("playing "):], value[len("playing the "):]]
    return [value]


def _value(world: World, attribute: str, raw) -> str:
    return world.org(raw).name if attribute == "employer" else str(raw)


def _phrasings(world: World, base: str, templates: tuple[str, ...], phrasings: int, **fields):
    """(template index, text) for ``phrasings`` distinct templates, picked by the question's own stream."""
    rng = random.Random(f"memkit-world-q:{world.config.seed}:{base}")
    for k, index in enumerate(rng.sample(range(len(templates)), min(phrasings, len(templates)))):
        yield (base if k == 0 else f"{base}#{k}"), index, templates[index].format(**fields)


def _as_of_dates(world: World, person: Person, attribute: str) -> list[str]:
    """One date inside each period of ``attribute``'s history, away from the days it changed."""
    rng = random.Random(f"memkit-world-asof:{world.config.seed}:{person.id}:{attribute}")
    starts = [date.fromisoformat(d) for d, _ in person.history(attribute)]
    ends = [s - timedelta(days=1) for s in starts[1:]] + [date.fromisoformat(world.config.end_date)]
    out = []
    for start, end in zip(starts, ends):
        lo, hi = start + timedelta(days=1), end - timedelta(days=1)
        out.append((start if lo > hi else lo + timedelta(days=rng.randint(0, (hi - lo).days))).isoformat())
    return out


def person_questions(world: World, person: Person, phrasings: int = 1) -> list[Question]:
    out: list[Question] = []
    bio = bio_id(person)
    changed = {u.attribute for u in person.updates}

    def add(base, templates, qtype, attribute, value, doc_ids, when=None, **fields):
        for qid, index, text in _phrasings(world, base, templates, phrasings, name=person.name, **fields):
            out.append(Question(qid, text, answers_for(value), qtype, person.id, attribute, doc_ids,
                                person.split, index, when))

    for attribute in PERSON_ATTRIBUTES:
        templates = PERSON_QUESTIONS[attribute]
        if attribute not in changed:
            add(f"{person.id}:single:{attribute}", templates, "single", attribute,
                _value(world, attribute, getattr(person, attribute)), [bio])
            continue
        updates = [(i, u) for i, u in enumerate(person.updates) if u.attribute == attribute]
        add(f"{person.id}:current:{attribute}", templates, "current", attribute,
            _value(world, attribute, person.current(attribute)), [bio] + [update_id(person, i) for i, _ in updates])
        for k, when in enumerate(_as_of_dates(world, person, attribute)):
            docs = [bio] + [update_id(person, i) for i, u in updates if u.date <= when]
            add(f"{person.id}:as_of:{attribute}:{k}", AS_OF_QUESTIONS[attribute], "as_of", attribute,
                _value(world, attribute, person.value_at(attribute, when)), docs, when, date=when)
    if "employer" not in changed:
        org = world.org(person.employer)
        rng = random.Random(f"memkit-world-hop:{world.config.seed}:{person.id}")
        attribute = rng.choice(ORG_ATTRIBUTES)
        add(f"{person.id}:two_hop:{attribute}", TWO_HOP_QUESTIONS[attribute], "two_hop", attribute,
            str(getattr(org, attribute)), [bio, org_id(org)])
    return out


def org_questions(world: World, org: Organisation, phrasings: int = 1) -> list[Question]:
    out = []
    for attribute in ORG_ATTRIBUTES:
        base = f"{org.id}:single:{attribute}"
        for qid, index, text in _phrasings(world, base, ORG_QUESTIONS[attribute], phrasings, name=org.name):
            out.append(Question(qid, text, answers_for(str(getattr(org, attribute))), "single", org.id,
                                attribute, [org_id(org)], org.split, index))
    return out


def questions(world: World, split: str | None = None, phrasings: int = 1) -> list[Question]:
    """Every question of ``split`` (or of the whole world); ``phrasings`` (1-3) distinct wordings per fact."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if phrasings < 1:
        raise ValueError("phrasings must be >= 1")
    out: list[Question] = []
    for org in world.orgs:
        if split in (None, org.split):
            out += org_questions(world, org, phrasings)
    for person in world.persons:
        if split in (None, person.split):
            out += person_questions(world, person, phrasings)
    return out
