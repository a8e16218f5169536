"""Invented names and the value pools of the synthetic world.

Owns: the syllable inventories and fixed word lists every name and attribute value is drawn from, and the rule
that gives each entity name to exactly one split. That rule is a stable hash of the name itself, independent of
any seed or size, so a test entity's name can never be a pretraining or training entity's name, in any world
built with any configuration. Knows nothing of entities, documents or questions.

Name words are short (two syllables from a small inventory) so a tokenizer trained on the world gives a full
name two or three tokens, and the pools are prefix-free (no name word begins another), so finding a name or a
city in a text by substring is exact.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from functools import lru_cache

SPLITS = ("pretrain", "train", "test")

_FIRST_STARTS = ("A", "E", "I", "O", "Ma", "Li", "Te", "No", "Ro", "Sa", "Ve", "Da", "Ka", "Mi", "Lo",
                 "Ne", "Ta", "Ri", "Be", "Jo", "Ha", "Se", "Fe", "Al", "El", "Ar")
_FEMALE_ENDS = ("da", "na", "ra", "la", "ssa", "ne", "ri", "ya", "lin", "va")
_MALE_ENDS = ("mas", "lon", "rik", "ven", "dor", "bert", "len", "mir", "ros", "tan", "vin", "dric")

_SURNAME_ONSETS = ("B", "Br", "D", "Dr", "F", "G", "Gr", "H", "K", "Kr", "L", "M", "N", "P", "R", "S", "St",
                   "T", "Tr", "V", "W", "Th")
_VOWELS = ("a", "e", "i", "o", "u")
_SURNAME_ENDS = ("lin", "rek", "var", "den", "mor", "dal", "rin", "bek", "nor", "vik", "wen", "dris", "mel",
                 "hast", "rov", "sen", "kel", "rith", "vell", "tam")

_CITY_STARTS = ("Kes", "Dun", "Mar", "Tol", "Bri", "Ald", "Vel", "Hol", "Ost", "Wen", "Cal", "Ren", "Tar",
                "Fen", "Lor", "Harn", "Quin", "Ves", "Orm", "Gil", "Ulv", "Sket")
_CITY_ENDS = ("sin", "moor", "wick", "holm", "ford", "by", "mere", "stad", "vik", "dale", "brook", "reach")

# Generated strings that are English words, well-known names of people or real places; the generators skip them.
_BLOCKED = frozenset(w.lower() for w in (
    "Ada", "Ana", "Ara", "Ane", "Ala", "Mara", "Lina", "Nina", "Rona", "Sara", "Tara", "Dana", "Vera", "Rosa",
    "Roma", "Lima", "Mina", "None", "Mine", "Lone", "Oven", "Salon", "Talon", "Elon", "Mamas", "Arssa",
    "Alssa", "Elssa", "Aden", "Eden", "Baden", "Basel", "Haven", "Raven", "Seven", "Sugar", "Motor", "Milan",
    "Marin", "Turin", "Timor", "Tumor", "Humor", "Rumor", "Tremor", "Manor", "Tenor", "Donor", "Minor",
    "Honor", "Laden", "Widen", "Risen", "Pedal", "Medal", "Modal", "Nodal", "Tidal", "Derek", "Robin",
    "Bolin", "Keswick", "Renwick", "Fenwick", "Eskdale", "Holby", "Derby", "Selby", "Oslo",
))
# "Ada" is blocked because the project's own examples use "Ada Varn"; a world name should not collide.

OCCUPATIONS = (
    "cartographer", "beekeeper", "glassblower", "clockmaker", "bookbinder", "lighthouse keeper", "weaver",
    "cooper", "blacksmith", "tailor", "baker", "brewer", "miller", "surveyor", "archivist", "translator",
    "pharmacist", "veterinarian", "carpenter", "stonemason", "locksmith", "florist", "jeweller", "librarian",
    "nurse", "engineer", "architect", "geologist", "botanist", "chemist", "notary", "auctioneer",
    "typesetter", "saddler", "shipwright", "piano tuner", "glazier", "astronomer", "dentist", "accountant",
)

HOBBIES = (
    "chess", "archery", "fencing", "rowing", "sailing", "falconry", "birdwatching", "knitting", "origami",
    "calligraphy", "gardening", "angling", "hiking", "watercolour painting", "woodcarving", "stargazing",
    "cycling", "juggling", "embroidery", "kite flying", "rock climbing", "swimming", "bell ringing",
    "beachcombing", "playing the lute", "playing the cello", "playing the harp", "playing the flute",
    "playing the fiddle", "playing the oboe",
)

INDUSTRIES = (
    "shipbuilding", "printing", "brewing", "insurance", "mining", "textiles", "publishing", "shipping",
    "flour milling", "tanning", "forestry", "ropemaking", "glassmaking", "papermaking", "pottery",
    "railways", "timber", "dairy", "canning", "furniture", "banking",
)

# Organisation name patterns: "{stem}" is an invented word, "{city}" a city of the pool.
ORG_PATTERNS = ("{stem} Works", "{stem} Trust", "{stem} Mills", "{stem} Holdings", "{stem} Guild",
                "{stem} Foundry", "{stem} Company", "{stem} Partners", "Bank of {city}")
BANK_INDUSTRY = "banking"   # the industry of every "Bank of ..." organisation


@dataclass(frozen=True)
class Pools:
    """Every name word and value the world draws from; fixed by ``pool_seed`` alone.

    female_first / male_first: first names (the pronoun a bio uses follows the pool).
    surnames: family names; org_stems: the invented words of organisation names; cities: place names.
    occupations, hobbies, industries: plain-word value lists, shared by every split.
    """

    female_first: tuple[str, ...]
    male_first: tuple[str, ...]
    surnames: tuple[str, ...]
    org_stems: tuple[str, ...]
    cities: tuple[str, ...]
    occupations: tuple[str, ...] = OCCUPATIONS
    hobbies: tuple[str, ...] = HOBBIES
    industries: tuple[str, ...] = INDUSTRIES


def split_of(name: str) -> str:
    """The one split an entity name may belong to: a stable hash of the name, the same in every world."""
    return SPLITS[zlib.crc32(name.encode("utf-8")) % len(SPLITS)]


def _conflicts(word: str, taken: list[str]) -> bool:
    """True when ``word`` begins or ends another taken word, or another begins or ends it."""
    return any(a.startswith(b) or a.endswith(b) for t in taken for a, b in ((word, t), (t, word)))


def _draw(rng: random.Random, candidates: list[str], n: int, taken: list[str], what: str) -> tuple[str, ...]:
    """``n`` candidates in shuffled order, skipping blocked words and any that is a prefix of a taken word."""
    rng.shuffle(candidates)
    chosen: list[str] = []
    for word in candidates:
        if len(chosen) == n:
            break
        if word.lower() in _BLOCKED or _conflicts(word, taken):
            continue
        chosen.append(word)
        taken.append(word)
    if len(chosen) < n:
        raise ValueError(f"the syllable inventory yields only {len(chosen)} {what}; {n} are needed")
    return tuple(chosen)


@lru_cache(maxsize=4)
def build_pools(pool_seed: int = 0, *, n_first: int = 60, n_surnames: int = 400, n_stems: int = 300,
                n_cities: int = 60) -> Pools:
    """The name and value pools; the same ``pool_seed`` always gives the same pools."""
    rng = random.Random(f"memkit-world-pools:{pool_seed}")
    taken: list[str] = []
    female = _draw(rng, sorted({s + e for s in _FIRST_STARTS for e in _FEMALE_ENDS}), n_first, taken,
                   "female first names")
    male = _draw(rng, sorted({s + e for s in _FIRST_STARTS for e in _MALE_ENDS}), n_first, taken,
                 "male first names")
    city_words = sorted({s + e for s in _CITY_STARTS for e in _CITY_ENDS if s[-1] != e[0]})
    cities = _draw(rng, city_words, n_cities, taken, "cities")
    words = sorted({o + v + e for o in _SURNAME_ONSETS for v in _VOWELS for e in _SURNAME_ENDS})
    surnames = _draw(rng, words, n_surnames, taken, "surnames")
    stems = _draw(rng, [w for w in words if w not in surnames], n_stems, taken, "organisation stems")
    return Pools(female_first=female, male_first=male, surnames=surnames, org_stems=stems, cities=cities)


@lru_cache(maxsize=16)
def person_names(pools: Pools, split: str) -> tuple[tuple[str, str], ...]:
    """Every (full name, pronoun) whose name belongs to ``split``, in a fixed order."""
    out = []
    for first_names, pronoun in ((pools.female_first, "she"), (pools.male_first, "he")):
        for first in first_names:
            for last in pools.surnames:
                name = f"{first} {last}"
                if split_of(name) == split:
                    out.append((name, pronoun))
    return tuple(out)


@lru_cache(maxsize=16)
def org_names(pools: Pools, split: str) -> tuple[str, ...]:
    """Every organisation name that belongs to ``split``, in a fixed order."""
    out = []
    for pattern in ORG_PATTERNS:
        fills = pools.cities if "{city}" in pattern else pools.org_stems
        for fill in fills:
            name = pattern.format(stem=fill, city=fill)
            if split_of(name) == split:
                out.append(name)
    return tuple(out)


def article(noun: str) -> str:
    """``noun`` with "a" or "an" in front."""
    return ("an " if noun[0].lower() in "aeiou" else "a ") + noun
