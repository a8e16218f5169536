"""The database-side text index (storage/lexical.py) on a real SQLite file and, marked ``postgres``, on PostgreSQL.

The tables a store's migrations make are not this module's: each test makes a minimal ``documents`` and
``memories`` (with the store's cascade from documents to memories) and then the index's own DDL.
"""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage import lexical

TEXTS = {
    1: (1, "The lighthouse keeper lives alone on the rocky island of Varn."),
    2: (1, "Interest rates rose again this quarter, the central bank said."),
    3: (1, "A violinist from Zürich tuned her instrument before the concert."),
    4: (1, "Tidal power stations turn the motion of the sea into electricity."),
    5: (1, "The island ferry runs twice a day in summer."),
    6: (2, "The lighthouse keeper of Varn island, in another collection."),
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request, tmp_path):
    if request.param == "sqlite":
        eng = create_engine(f"sqlite:///{tmp_path / 'lexical.db'}")
        event.listen(eng, "connect", lambda dbapi, _: dbapi.execute("PRAGMA foreign_keys = ON"))
    else:
        eng = create_engine(request.getfixturevalue("postgres_db")())
    with eng.begin() as conn:
        conn.execute(text("CREATE TABLE documents (id INTEGER PRIMARY KEY)"))
        conn.execute(text("CREATE TABLE memories (id INTEGER PRIMARY KEY, document_id INTEGER NOT NULL "
                          "REFERENCES documents(id) ON DELETE CASCADE)"))
        for stmt in lexical.ddl_statements(eng.dialect.name):
            conn.execute(text(stmt))
    yield eng
    eng.dispose()


def put(conn, rows: dict[int, tuple[int, str]]) -> None:
    """Each memory in its own document, then its text indexed."""
    for memory_id in rows:
        conn.execute(text("INSERT INTO documents (id) VALUES (:i)"), {"i": memory_id})
        conn.execute(text("INSERT INTO memories (id, document_id) VALUES (:i, :i)"), {"i": memory_id})
    assert lexical.add(conn, [(i, cid, body) for i, (cid, body) in rows.items()]) == len(rows)


@pytest.fixture
def filled(engine):
    with engine.begin() as conn:
        put(conn, TEXTS)
    return engine


def ids(hits):
    return [i for i, _ in hits]


def test_the_row_sharing_the_questions_rare_words_comes_first_scores_falling(filled):
    with filled.connect() as conn:
        hits = lexical.search(conn, 1, "Who keeps the lighthouse on Varn island?", 3)
        assert ids(hits)[0] == 1
        assert 6 not in ids(hits)                             # another collection's row is never returned
        assert len(hits) <= 3 and all(s > 0 for _, s in hits)
        assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
        assert ids(lexical.search(conn, 1, "What did the central bank say about interest rates?", 5))[0] == 2
        assert ids(lexical.search(conn, 2, "lighthouse keeper", 5)) == [6]
        # more shared words score higher: 1 has island, lighthouse and keeper, 5 only island
        island = dict(lexical.search(conn, 1, "island lighthouse keeper", 5))
        assert island[1] > island[5] > 0
        assert lexical.count(conn, 1) == 5 and lexical.count(conn, 2) == 1


def test_questions_are_or_queries_not_and_queries(filled):
    # no row holds every word of this question; an AND query (plainto_tsquery, FTS5's default) would find nothing
    with filled.connect() as conn:
        assert ids(lexical.search(conn, 1, "Which ferry crosses to the island every winter morning?", 5))[0] == 5


NASTY = [
    '"lighthouse',                      # unbalanced quote
    'lighthouse" OR "x',
    "lighthouse AND NOT keeper",        # FTS5 operators as words
    "NEAR(lighthouse island, 2)",
    "-lighthouse",                      # negation in websearch syntax
    "collection_id:2 lighthouse",       # a column filter in FTS5
    "text: lighthouse",
    "^lighthouse",
    "lighthouse:*",                     # prefix in tsquery
    "lighthouse & !keeper | (island",   # tsquery operators
    "lighthouse\\",
    "{text collection_id}: lighthouse",
    "lighthouse\x00keeper",
]


@pytest.mark.parametrize("query", NASTY)
def test_query_syntax_in_a_question_is_only_words(filled, query):
    with filled.connect() as conn:
        hits = lexical.search(conn, 1, query, 5)
    assert ids(hits)[0] == 1 and 6 not in ids(hits)


@pytest.mark.parametrize("query", ["", "   ", "*", '""', "()", "\\", "'", "-", "AND", "OR NOT", "the of what is",
                                   "Who was it?", "\x00", "🎻🎻", ":*"])
def test_a_query_without_a_content_word_finds_nothing_and_raises_nothing(filled, query):
    with filled.connect() as conn:
        assert lexical.search(conn, 1, query, 5) == []


def test_star_is_not_a_prefix_and_injection_is_text(filled):
    with filled.connect() as conn:
        assert lexical.search(conn, 1, "lighth*", 5) == []        # no word "lighth": * is not a prefix operator
        assert lexical.search(conn, 1, "'; DROP TABLE memories; --", 5) == []
        assert lexical.search(conn, 1, "\"); DELETE FROM memory_text; --", 5) == []
        assert lexical.count(conn, 1) == 5
    assert inspect(filled).has_table("memories")


def test_unicode_words_match(filled, engine):
    with filled.connect() as conn:
        assert ids(lexical.search(conn, 1, "Zürich 🎻 violinist?", 5))[0] == 3
        assert ids(lexical.search(conn, 1, "ＺÜＲＩＣＨ", 5)) == [3]     # full-width letters NFKC-normalised
        assert lexical.search(conn, 1, "東京", 5) == []
        if engine.dialect.name == "sqlite":                              # FTS5 folds diacritics; 'english' keeps them
            assert ids(lexical.search(conn, 1, "zurich", 5)) == [3]


def test_a_very_long_query_or_text_is_cut_not_refused(engine):
    long_text = "lighthouse " + " ".join(f"w{i}x" for i in range(60_000))   # ~420K characters, 60K distinct words
    with engine.begin() as conn:
        put(conn, {1: (1, long_text), 2: (1, "A short note about the harbour.")})
    with engine.connect() as conn:
        assert ids(lexical.search(conn, 1, "harbour " * 5000, 5)) == [2]
        assert ids(lexical.search(conn, 1, "the lighthouse", 5)) == [1]
    assert len(lexical.query_terms(" ".join(f"t{i}" for i in range(1000)))) == lexical.MAX_TERMS


def test_search_many_equals_search_one_by_one_and_k_bounds(filled):
    questions = ["lighthouse island", "", "interest rates", "electricity from the sea", "the"]
    with filled.connect() as conn:
        many = lexical.search_many(conn, 1, questions, 2)
        assert many == [lexical.search(conn, 1, q, 2) for q in questions]
        assert [len(h) for h in many] == [2, 0, 1, 1, 0]
        assert lexical.search(conn, 1, "lighthouse", 0) == [] and lexical.search_many(conn, 1, [], 5) == []
        assert lexical.search(conn, 99, "lighthouse", 5) == []


def test_ties_are_broken_by_id(engine):
    with engine.begin() as conn:
        put(conn, {7: (1, "same words here"), 3: (1, "same words here"), 5: (1, "same words here")})
    with engine.connect() as conn:
        assert ids(lexical.search(conn, 1, "same words", 5)) == [3, 5, 7]


def test_remove_and_remove_collection(filled):
    with filled.begin() as conn:
        lexical.remove(conn, [1, 999])                   # an id never indexed is ignored
        lexical.remove(conn, [])
    with filled.connect() as conn:
        assert 1 not in ids(lexical.search(conn, 1, "lighthouse island", 5))
        assert ids(lexical.search(conn, 1, "lighthouse island", 5)) == [5]
        assert lexical.count(conn, 1) == 4
    with filled.begin() as conn:
        lexical.remove_collection(conn, 1)
    with filled.connect() as conn:
        assert lexical.count(conn, 1) == 0 and lexical.count(conn, 2) == 1


def test_deleting_a_memory_or_its_document_drops_its_text(filled):
    with filled.begin() as conn:
        conn.execute(text("DELETE FROM memories WHERE id = 1"))
        conn.execute(text("DELETE FROM documents WHERE id = 2"))   # cascades to memory 2
    with filled.connect() as conn:
        assert lexical.search(conn, 1, "lighthouse", 5) == []
        assert lexical.search(conn, 1, "interest rates bank", 5) == []
        assert lexical.count(conn, 1) == 3


def test_it_works_inside_the_callers_transaction_and_a_rollback_undoes_it(engine):
    with engine.connect() as conn:
        trans = conn.begin()
        put(conn, {1: (1, "lighthouse on the island")})
        assert ids(lexical.search(conn, 1, "lighthouse", 5)) == [1]     # visible inside the transaction
        trans.rollback()
    with engine.connect() as conn:
        assert lexical.search(conn, 1, "lighthouse", 5) == [] and lexical.count(conn, 1) == 0
    with Session(engine) as session:                                    # an ORM session works the same
        put(session, {2: (1, "a ferry to the island")})
        session.commit()
    with Session(engine) as session:
        assert ids(lexical.search(session, 1, "ferry", 5)) == [2]


def test_indexing_a_memory_twice_is_refused(filled):
    with pytest.raises(IntegrityError):
        with filled.begin() as conn:
            lexical.add(conn, [(1, 1, "again")])
    with filled.connect() as conn:
        assert lexical.count(conn, 1) == 5


def test_ddl_is_idempotent_and_checked(engine):
    with engine.begin() as conn:
        for stmt in lexical.ddl_statements(engine.dialect.name):
            conn.execute(text(stmt))
    with pytest.raises(ValueError, match="mysql"):
        lexical.ddl_statements("mysql")
    with pytest.raises(ValueError, match="tokenizer"):
        lexical.ddl_statements("sqlite", tokenizer="porter'); DROP TABLE memories; --")
    with pytest.raises(ValueError):
        lexical.PgText(config="english'); --")
    with pytest.raises(ValueError):
        lexical.PgText(rank="now")


def test_query_terms_and_the_fts5_expression():
    assert lexical.query_terms("What is the Capital of FRANCE, france?") == ["capital", "france"]
    assert lexical.query_terms("ﬁnance_report ＡＢＣ 3rd") == ["finance", "report", "abc", "3rd"]
    assert lexical.query_terms("the of and") == []
    assert lexical.fts5_match('Say "hi" AND bye*') == '"say" OR "hi" OR "bye"'
    assert lexical.fts5_match("?!") is None
