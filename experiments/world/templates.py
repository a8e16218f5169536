"""The wording of world documents: frames, sentence paraphrases per fact, and neutral filler sentences.

Owns: text only. Every fact sentence names its subject once, through ``{Subj}``/``{subj}`` (the name, or a
pronoun at the start or in the middle of a sentence) or ``{Poss}``/``{poss}`` (its possessive form). Filler
sentences hold no names, numbers or attribute values, so a fact's value appears in a document only where a fact
sentence states it. Knows nothing of entities, randomness or questions.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Frame:
    """How one kind of document opens and closes.

    opening: the first sentence; it always names the subject (``{name}``).
    closing: an optional last sentence.
    pronouns: whether fact sentences may refer to the subject by pronoun (half of them, at random).
    """

    opening: str
    closing: str | None = None
    pronouns: bool = False


BIO_FRAMES = (
    Frame("This is a short biography of {name}."),
    Frame("The following notes describe {name}.", "These notes were written from public records.", True),
    Frame("Here is what is known about {name}.", None, True),
    Frame("{name}: a brief profile.", "Nothing more is recorded about {name}."),
    Frame("A neighbour once wrote down a few facts about {name}.", None, True),
    Frame("The town archive keeps a short file on {name}.", "The file on {name} ends there."),
    Frame("Profile of {name}, prepared for the community newsletter.",
          "The newsletter thanks {name} for the interview.", True),
    Frame("Few people outside the district have heard of {name}."),
    Frame("Among the residents of the region is {name}.", "Such is the life of {name} so far.", True),
    Frame("Some facts about {name} follow.", None, False),
)

# Fact sentences of a biography. "birth" states year and city together, "job" occupation and employer.
BIO_FACTS = {
    "birth": ("{Subj} was born in {birth_city} in {birth_year}.",
              "{Subj} was born in {birth_year} in the city of {birth_city}.",
              "{Poss} life began in {birth_city} in {birth_year}."),
    "birth_year": ("{Subj} was born in {birth_year}.",
                   "{Subj} came into the world in {birth_year}.",
                   "{Poss} year of birth is {birth_year}."),
    "birth_city": ("{Subj} was born in {birth_city}.",
                   "{Poss} birthplace is {birth_city}.",
                   "{Subj} is a native of {birth_city}."),
    "home_city": ("{Subj} lives in {home_city}.",
                  "{Subj} now makes a home in {home_city}.",
                  "These days {subj} lives in the city of {home_city}.",
                  "{Poss} home is in {home_city}.",
                  "{Subj} resides in {home_city}."),
    "employer": ("{Subj} works for {employer}.",
                 "{Subj} is employed by {employer}.",
                 "{Poss} employer is {employer}.",
                 "{Subj} holds a position at {employer}."),
    "occupation": ("{Subj} works as {a_occupation}.",
                   "By trade, {subj} is {a_occupation}.",
                   "{Poss} occupation is {occupation}.",
                   "{Subj} earns a living as {a_occupation}."),
    "job": ("{Subj} works as {a_occupation} for {employer}.",
            "{Subj} is {a_occupation} at {employer}."),
    "hobby": ("In spare moments, {subj} enjoys {hobby}.",
              "{Poss} favourite pastime is {hobby}.",
              "{Subj} is fond of {hobby}.",
              "Outside work, {subj} has a passion for {hobby}."),
}

ORG_FRAMES = (
    Frame("This note describes {name}.", None, True),
    Frame("Here is a short account of {name}.", "That concludes the account of {name}."),
    Frame("{name}: an overview.", None, True),
    Frame("The regional directory has an entry for {name}.", "The directory entry for {name} ends here.", True),
    Frame("Readers often ask about {name}.", None, False),
)

# Fact sentences of an organisation; ``{Subj}`` is the name or "It", ``{obj}`` the name or "it".
ORG_FACTS = {
    "hq_city": ("{Subj} is based in {hq_city}.",
                "{Poss} headquarters are in {hq_city}.",
                "{Subj} has its head office in {hq_city}."),
    "founded_year": ("{Subj} was founded in {founded_year}.",
                     "{Subj} was established in {founded_year}.",
                     "{Poss} founding year is {founded_year}."),
    "industry": ("{Subj} works in {industry}.",
                 "{Subj} is active in the {industry} trade.",
                 "{Poss} line of business is {industry}."),
    "leader": ("{Subj} is led by {leader}.",
               "{Poss} head is {leader}.",
               "{leader} runs {obj}."),
}

UPDATE_OPENINGS = (
    "Notice of change, dated {date}.",
    "From the local register, {date}.",
    "A short note from the records office.",
    "Registry update for {name}.",
    "Change of details reported on {date}.",
)

# The sentence that states a change: {old} and {new} are city names or organisation names.
UPDATE_CHANGES = {
    "home_city": ("On {date} {name} moved from {old} to {new}.",
                  "On {date}, {name} left {old} and settled in {new}.",
                  "{name} moved to {new} from {old} on {date}."),
    "employer": ("On {date} {name} left {old} and joined {new}.",
                 "On {date}, {name} took up a new position at {new}, leaving {old}.",
                 "{name} joined {new} on {date} after leaving {old}."),
}

UPDATE_FOLLOWUPS = {
    "home_city": ("{Subj} now lives in {new}.",
                  "Since then {subj} has lived in {new}.",
                  "{Poss} new home is in {new}."),
    "employer": ("{Subj} now works for {new}.",
                 "Since then {subj} has been employed by {new}.",
                 "{Poss} new employer is {new}."),
}

BIO_FILLERS = (
    "Friends describe the household as calm and well organised.",
    "Letters from old friends arrive most weeks.",
    "Neighbours say the door is always open to visitors.",
    "Rainy weekends are spent catching up on letters.",
    "Old photographs line the hallway of the house.",
    "Holidays are usually spent by the sea.",
    "A small dog keeps the household busy.",
    "Colleagues speak warmly of a steady and patient manner.",
    "Visitors are always offered a warm drink.",
    "The house is known for its bright blue shutters.",
    "Sunday dinners bring the whole family together.",
    "Punctuality matters a great deal in daily life.",
    "A bicycle is the usual way of getting around.",
    "Books pile up on every table in the house.",
    "Summers are often spent visiting relatives.",
    "Early mornings are the favourite time of day.",
    "Acquaintances remember a quick laugh and a firm handshake.",
    "The kitchen window looks out over a quiet street.",
    "A long walk after dinner is a habit of many years.",
    "Most evenings end with the radio playing softly.",
)

ORG_FILLERS = (
    "Visitors are welcome by appointment.",
    "Its offices close early on market days.",
    "Each season it sends a short report to its members.",
    "The staff meet every morning to plan the day.",
    "Its building has a green door and a brass plate.",
    "Customers often praise its careful bookkeeping.",
    "It keeps an archive of old letters and ledgers.",
    "Most of its work is done by small teams.",
    "A new roof was put on its main building not long ago.",
    "It sponsors a small prize at the local school.",
    "The annual meeting is usually short and cheerful.",
    "Orders are taken by letter and by telephone.",
    "Apprentices train there for several years.",
    "Its accounts are checked by an outside auditor.",
    "A motto is painted above the main entrance.",
    "Deliveries arrive on weekday mornings.",
)

UPDATE_FILLERS = (
    "The register is updated whenever residents report a change.",
    "Such notices are kept on file for many years.",
    "Corrections can be sent to the records office by letter.",
    "The office publishes these notes once a week.",
    "Notices of this kind are common at this time of year.",
    "Friends and neighbours were told of the change by letter.",
    "The paperwork was completed without delay.",
    "Further details are available on request.",
    "The records office thanks everyone who reports changes promptly.",
    "A copy of this note goes to the regional archive.",
    "The change was confirmed by a clerk of the office.",
    "No other details were changed in the register.",
)
