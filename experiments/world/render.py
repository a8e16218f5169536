"""World documents: a biography per person, a description per organisation, a dated notice per update.

Owns: ``Document`` and turning entities into text with the wording of ``templates``: a frame, one paraphrase
per fact, fact sentences in shuffled order, and neutral filler sentences (0-3, more where a document would be
shorter than ``MIN_WORDS``). Every document is drawn from its own random stream (world seed + document id), so
a document does not change when others are added. Knows nothing of questions or of memkit.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from datetime import date, timedelta

from experiments.world import templates as T
from experiments.world.entities import Organisation, Person, World
from experiments.world.names import SPLITS, article

MIN_WORDS = 72          # at least 80 tokens with a byte-level BPE tokenizer of 2048-4096 tokens trained on the world
MAX_FILLERS = 3         # filler sentences a document gets beyond what its minimum length needs
KINDS = ("bio", "org", "update")


@dataclass
class Document:
    """One rendered document. ``template`` is the index of the frame (bio, org) or opening (update) used."""

    id: str
    text: str
    timestamp: str
    entity: str
    kind: str
    split: str
    template: int

    @property
    def source(self) -> str:
        return f"world:{self.kind}:{self.entity}"

    def to_dict(self) -> dict:
        return {**asdict(self), "source": self.source}


def bio_id(person: Person) -> str:
    return f"bio-{person.id}"


def update_id(person: Person, index: int) -> str:
    return f"upd-{person.id}-{index}"


def org_id(org: Organisation) -> str:
    return f"org-{org.id}"


def _rng(world: World, doc_id: str) -> random.Random:
    return random.Random(f"memkit-world-doc:{world.config.seed}:{doc_id}")


_PRONOUNS = {"she": ("she", "her", "her"), "he": ("he", "his", "him"), "it": ("it", "its", "it")}


def _refs(name: str, pronoun: str, by_pronoun: bool) -> dict[str, str]:
    """The ways a fact sentence names its subject: by name, or (``by_pronoun``) by ``pronoun``.

    An organisation whose name ends in s (a plural like "Works") takes a bare apostrophe as possessive.
    """
    if not by_pronoun:
        poss = name + ("'" if pronoun == "it" and name.endswith("s") else "'s")
        return {"Subj": name, "subj": name, "Poss": poss, "poss": poss, "obj": name}
    subj, poss, obj = _PRONOUNS[pronoun]
    return {"Subj": subj.capitalize(), "subj": subj, "Poss": poss.capitalize(), "poss": poss, "obj": obj}


def _ref(rng: random.Random, frame: T.Frame, name: str, pronoun: str) -> dict[str, str]:
    return _refs(name, pronoun, frame.pronouns and rng.random() < 0.5)


def _assemble(rng: random.Random, opening: str, facts: list[str], fillers: tuple[str, ...],
              closing: str | None = None) -> str:
    """Opening first, facts shuffled, fillers at random places after the opening, closing last."""
    rng.shuffle(facts)
    body = list(facts)
    pool = list(fillers)
    rng.shuffle(pool)
    extra = rng.randint(0, MAX_FILLERS)

    def words() -> int:
        return sum(len(s.split()) for s in [opening, *body, closing or ""])

    added = 0
    while pool and (added < extra or words() < MIN_WORDS):
        body.insert(rng.randint(0, len(body)), pool.pop())
        added += 1
    return " ".join([opening, *body] + ([closing] if closing else []))


def _date_between(rng: random.Random, first: str, last: str) -> str:
    a, b = date.fromisoformat(first), date.fromisoformat(last)
    return (a + timedelta(days=rng.randint(0, (b - a).days))).isoformat()


def render_bio(world: World, person: Person) -> Document:
    doc_id = bio_id(person)
    rng = _rng(world, doc_id)
    index = rng.randrange(len(T.BIO_FRAMES))
    frame = T.BIO_FRAMES[index]
    values = {"name": person.name, "birth_year": person.birth_year, "birth_city": person.birth_city,
              "home_city": person.home_city, "employer": world.org(person.employer).name,
              "occupation": person.occupation, "a_occupation": article(person.occupation),
              "hobby": person.hobby}
    keys = ["birth"] if rng.random() < 0.4 else ["birth_year", "birth_city"]
    keys += ["home_city", "hobby"]
    keys += ["job"] if rng.random() < 0.3 else ["occupation", "employer"]
    facts = [rng.choice(T.BIO_FACTS[k]).format(**values, **_ref(rng, frame, person.name, person.pronoun))
             for k in keys]
    closing = frame.closing.format(name=person.name) if frame.closing else None
    text = _assemble(rng, frame.opening.format(name=person.name), facts, T.BIO_FILLERS, closing)
    return Document(doc_id, text, person.bio_date, person.id, "bio", person.split, index)


def render_org(world: World, org: Organisation) -> Document:
    doc_id = org_id(org)
    rng = _rng(world, doc_id)
    index = rng.randrange(len(T.ORG_FRAMES))
    frame = T.ORG_FRAMES[index]
    values = {"hq_city": org.hq_city, "founded_year": org.founded_year, "industry": org.industry,
              "leader": org.leader}
    facts = [rng.choice(T.ORG_FACTS[k]).format(**values, **_ref(rng, frame, org.name, "it"))
             for k in T.ORG_FACTS]
    closing = frame.closing.format(name=org.name) if frame.closing else None
    text = _assemble(rng, frame.opening.format(name=org.name), facts, T.ORG_FILLERS, closing)
    when = _date_between(rng, world.config.start_date, world.config.update_start)
    return Document(doc_id, text, when, org.id, "org", org.split, index)


def _shown(world: World, attribute: str, value: str) -> str:
    return world.org(value).name if attribute == "employer" else value


def render_update(world: World, person: Person, index: int) -> Document:
    """The notice of ``person.updates[index]``: the change with its date, old and new values."""
    doc_id = update_id(person, index)
    rng = _rng(world, doc_id)
    update = person.updates[index]
    old = person.value_at(update.attribute, (date.fromisoformat(update.date) - timedelta(days=1)).isoformat())
    values = {"name": person.name, "date": update.date, "old": _shown(world, update.attribute, old),
              "new": _shown(world, update.attribute, update.value)}
    opening_index = rng.randrange(len(T.UPDATE_OPENINGS))
    refs = _refs(person.name, person.pronoun, rng.random() < 0.5)
    change = (rng.choice(T.UPDATE_CHANGES[update.attribute]).format(**values) + " "
              + rng.choice(T.UPDATE_FOLLOWUPS[update.attribute]).format(**values, **refs))
    opening = T.UPDATE_OPENINGS[opening_index].format(**values)
    text = _assemble(rng, opening, [change], T.UPDATE_FILLERS)
    return Document(doc_id, text, update.date, person.id, "update", person.split, opening_index)


def person_documents(world: World, person: Person) -> list[Document]:
    """The biography, then the update notices in date order."""
    return [render_bio(world, person)] + [render_update(world, person, i) for i in range(len(person.updates))]


def documents(world: World, split: str | None = None) -> list[Document]:
    """Every document of ``split`` (or of the whole world), sorted by (timestamp, id): the order to ingest."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    docs = [render_org(world, o) for o in world.orgs if split in (None, o.split)]
    for person in world.persons:
        if split in (None, person.split):
            docs += person_documents(world, person)
    return sorted(docs, key=lambda d: (d.timestamp, d.id))
