"""Questions: gold answers stated by their documents, two-hop chains and as-of dates consistent, QA examples."""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict

import pytest

from experiments.world.entities import build_world
from experiments.world.examples import qa_examples
from experiments.world.questions import (
    AS_OF_QUESTIONS,
    ORG_QUESTIONS,
    PERSON_QUESTIONS,
    QUESTION_TYPES,
    TWO_HOP_QUESTIONS,
    questions,
)

from worldhelpers import SMALL


def test_same_seed_same_questions_and_another_seed_others(small_questions):
    assert questions(build_world(SMALL)) == small_questions
    other = questions(build_world(dataclasses.replace(SMALL, seed=SMALL.seed + 1)))
    assert [q.question for q in other] != [q.question for q in small_questions]


def test_every_type_present_ids_unique_and_three_phrasings_each(small_questions):
    assert {q.type for q in small_questions} == set(QUESTION_TYPES)
    assert len({q.id for q in small_questions}) == len(small_questions)
    for table in (PERSON_QUESTIONS, ORG_QUESTIONS, AS_OF_QUESTIONS, TWO_HOP_QUESTIONS):
        assert all(len(set(t)) >= 3 for t in table.values())


def test_answers_are_short_and_stated_by_the_last_gold_document(small_docs, small_questions):
    by_id = {d.id: d for d in small_docs}
    for q in small_questions:
        assert q.doc_ids and all(i in by_id for i in q.doc_ids)
        assert 1 <= len(q.answers[0].split()) <= 3
        assert all(a in by_id[q.doc_ids[-1]].text for a in q.answers), q
        assert all(by_id[i].split == q.split for i in q.doc_ids)


def test_two_hop_chain_runs_through_both_documents(small_world, small_docs, small_questions):
    by_id = {d.id: d for d in small_docs}
    hops = [q for q in small_questions if q.type == "two_hop"]
    assert hops
    for q in hops:
        bio, org_doc = (by_id[i] for i in q.doc_ids)
        person, org = small_world.person(q.entity), small_world.org(org_doc.entity)
        assert bio.kind == "bio" and org_doc.kind == "org" and org.id == person.employer
        assert org.name in bio.text and org.name in org_doc.text and q.answers[0] in org_doc.text
        assert q.answers[0] == str(getattr(org, q.attribute))


def test_as_of_and_current_follow_the_update_dates(small_world, small_docs, small_questions):
    by_id = {d.id: d for d in small_docs}
    per_fact = defaultdict(list)
    for q in small_questions:
        if q.type not in ("as_of", "current"):
            continue
        person = small_world.person(q.entity)
        dates = [by_id[i].timestamp for i in q.doc_ids]
        assert dates == sorted(dates) and by_id[q.doc_ids[0]].kind == "bio"
        if q.type == "current":
            last = max(i for i, u in enumerate(person.updates) if u.attribute == q.attribute)
            assert q.doc_ids[-1] == f"upd-{person.id}-{last}"
            continue
        assert q.date in q.question and dates[-1] <= q.date
        later = [u for u in person.updates if u.attribute == q.attribute and u.date > q.date]
        assert len(q.doc_ids) - 1 + len(later) == sum(u.attribute == q.attribute for u in person.updates)
        per_fact[(q.entity, q.attribute)].append(q)
    assert per_fact
    for (pid, attribute), qs in per_fact.items():
        person = small_world.person(pid)
        assert len(qs) == len(person.history(attribute))      # one question per period between changes
        assert len({q.answers[0] for q in qs}) >= 2            # answers differ across periods


def test_changed_facts_get_no_single_question(small_world, small_questions):
    for q in small_questions:
        if q.type == "single" and q.entity in {p.id for p in small_world.persons}:
            assert q.attribute not in {u.attribute for u in small_world.person(q.entity).updates}


def test_phrasings_give_distinct_wordings(small_world):
    qs = questions(small_world, "test", phrasings=3)
    groups = Counter(q.id.split("#")[0] for q in qs)
    assert set(groups.values()) == {3}
    assert len({q.question for q in qs}) == len(qs)


def test_qa_examples_reading_and_closed_book(small_world, small_docs):
    texts = {d.text for d in small_docs if d.split == "train"}
    examples = list(qa_examples(small_world, "train", ("reading", "closed_book"), types=("two_hop",)))
    reading, closed = examples[0::2], examples[1::2]
    assert reading and len(reading) == len(closed)
    for (passages, question, answer), (none, q2, a2) in zip(reading, closed):
        assert len(passages) == 2 and set(passages) <= texts and answer in passages[1]
        assert none == [] and (q2, a2) == (question, answer)
    noisy = list(qa_examples(small_world, "train", types=("single",), distractors=2, seed=1))
    assert all(len(p) == 3 and any(a in t for t in p) for p, _, a in noisy)
    with pytest.raises(ValueError, match="unknown"):
        next(qa_examples(small_world, "train", ("open_book",)))
