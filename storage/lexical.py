"""A database-side BM25-style text index of memories: SQLite FTS5, or a PostgreSQL tsvector table with a GIN index.

Owns: the index's DDL per dialect (``ddl_statements``), turning a user's query into a safe full-text query
(``query_terms``), and the statements that add, remove and search rows, each run on the caller's SQLAlchemy
``Connection`` or ``Session`` inside the caller's transaction (nothing here commits). A row is one memory:
``memory_text.rowid`` (SQLite) or ``memory_text.memory_id`` (PostgreSQL) is ``memories.id``, with the memory's
collection id and the text of its span of its document. Searches are per collection and return
``(memory id, score)`` best first, higher better. Knows nothing of FAISS, models, blobs or the ``Store``.

SQLite: an FTS5 virtual table ``memory_text(text, collection_id UNINDEXED)``, tokenizer ``TOKENIZER`` (chosen on
SQuAD, docs/benchmarks.md), ranked by FTS5's ``bm25()`` (k1 = 1.2, b = 0.75; lower is better there, so negated
here), and a trigger that deletes a memory's row when the memory is deleted (a foreign-key cascade from its
document or collection fires it too), as PostgreSQL's ``ON DELETE CASCADE`` does. Term statistics (document
frequencies, average length) are those of the whole table, all collections together.

PostgreSQL: ``memory_text(memory_id bigint primary key references memories(id) on delete cascade, collection_id
int, tsv tsvector)`` with a GIN index on ``tsv``, text search configuration and ranking as ``PG`` says (chosen on
SQuAD). A question's words are OR-ed: ``plainto_tsquery`` would AND them, and a question rarely shares every word
with its passage (on 1,000 SQuAD dev questions, AND puts the gold passage in the top 5 for 23 %, OR for 89 %). Rows
are ranked by ``ts_rank``, which has no inverse document frequency, so it finds a little less than SQLite's
BM25 on the same text. A row's text is indexed up to ``PG_MAX_CHARS`` characters (a tsvector holds at most 1 MB).

Query safety: a query is cut into words (letters and digits only, NFKC-normalised, lower-cased), function words
dropped, at most ``MAX_TERMS`` distinct ones kept; each word is quoted (FTS5) or passed as a bound parameter, so
no character of a query is ever query syntax (quotes, ``*``, ``AND``/``OR``/``NOT``/``NEAR``, ``-``, ``:``,
parentheses). A query with no word left finds nothing; it is never an error.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, text

TABLE = "memory_text"
TOKENIZER = "porter unicode61 remove_diacritics 2"
"""FTS5 tokenizer: Unicode word splitting, case and diacritics folded, English (Porter) stemming."""
_TOKENIZER_SHAPE = re.compile(r"[a-z0-9_ ]+")


@dataclass(frozen=True)
class PgText:
    """How PostgreSQL indexes and ranks: the text search configuration (a built-in one's name), the ranking
    function (``ts_rank`` or ``ts_rank_cd``) and its normalisation flags (a bit mask, 0 to 63)."""

    config: str = "english"
    rank: str = "ts_rank"
    normalization: int = 1

    def __post_init__(self):
        if not re.fullmatch(r"[a-z_]+", self.config):
            raise ValueError(f"text search configuration {self.config!r} is not a plain name")
        if self.rank not in ("ts_rank", "ts_rank_cd"):
            raise ValueError(f"ranking function {self.rank!r} is neither ts_rank nor ts_rank_cd")
        if not 0 <= int(self.normalization) <= 63:
            raise ValueError(f"normalization {self.normalization!r} is not a bit mask of 0 to 63")


PG = PgText()
"""PostgreSQL's settings (chosen on SQuAD, docs/benchmarks.md): the ``english`` configuration (Snowball stemming,
its stop words), ranked by ``ts_rank`` divided by 1 + log(document length) (normalisation 1)."""
PG_MAX_CHARS = 200_000
"""Characters of a row's text PostgreSQL indexes: a tsvector is limited to 1 MB, which this many characters of
natural-language text stay well under (a contrived text of ~100,000 distinct one-letter words could still pass it;
its insert is then refused with the caller's transaction)."""
MAX_TERMS = 64
"""Distinct words of a query kept (the first ones); longer queries are cut, never refused."""
CHUNK = 500
"""Rows per executemany batch and ids per ``IN (...)`` clause."""

STOPWORDS = frozenset("""
a an the of in on at to for by with from into onto about as and or but nor if then than so not no yes
is are was were be been being am do does did done has have had having will would can could shall should may
might must it its this that these those there here which what who whom whose where when why how
he she they them his her hers their theirs him we us our you your i me my
""".split())
"""English function words and question words, dropped from queries (SQLite; PostgreSQL's configuration has its
own list): they match nearly every row and carry almost no weight."""

_WORD = re.compile(r"[^\W_]+")


def query_terms(query: str) -> list[str]:
    """The distinct content words of ``query``, in order: NFKC-normalised, lower-cased runs of letters and digits,
    function words dropped, at most ``MAX_TERMS``. Only letters and digits survive, so a term can hold no query
    syntax of either database."""
    out: list[str] = []
    seen: set[str] = set()
    for word in _WORD.findall(unicodedata.normalize("NFKC", query).lower()):
        if word in STOPWORDS or word in seen:
            continue
        seen.add(word)
        out.append(word)
        if len(out) == MAX_TERMS:
            break
    return out


def fts5_match(query: str) -> str | None:
    """An FTS5 MATCH expression that ORs the query's words, each a quoted string (``"w1" OR "w2"``); None when the
    query has no word to search for."""
    terms = query_terms(query)
    if not terms:
        return None
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


def _dialect(conn) -> str:
    bind = conn.get_bind() if hasattr(conn, "get_bind") else conn
    return bind.dialect.name


def ddl_statements(dialect_name: str, *, tokenizer: str = TOKENIZER) -> list[str]:
    """The statements that create the index (in order; each idempotent), for ``sqlite`` or ``postgresql``. The
    ``memories`` table must exist first. ``tokenizer`` (SQLite) is FTS5's tokenize option, fixed when the table
    is made."""
    if dialect_name == "sqlite":
        if not _TOKENIZER_SHAPE.fullmatch(tokenizer):
            raise ValueError(f"FTS5 tokenizer {tokenizer!r} is not a list of plain words")
        return [
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {TABLE} USING fts5(text, collection_id UNINDEXED, "
            f"tokenize = '{tokenizer}')",
            f"CREATE TRIGGER IF NOT EXISTS {TABLE}_after_memory_delete AFTER DELETE ON memories "
            f"BEGIN DELETE FROM {TABLE} WHERE rowid = OLD.id; END",
        ]
    if dialect_name == "postgresql":
        return [
            f"CREATE TABLE IF NOT EXISTS {TABLE} (memory_id bigint PRIMARY KEY REFERENCES memories(id) "
            f"ON DELETE CASCADE, collection_id integer NOT NULL, tsv tsvector NOT NULL)",
            f"CREATE INDEX IF NOT EXISTS ix_{TABLE}_tsv ON {TABLE} USING gin (tsv)",
            f"CREATE INDEX IF NOT EXISTS ix_{TABLE}_collection_id ON {TABLE} (collection_id)",
        ]
    raise ValueError(f"no lexical index for the {dialect_name!r} dialect (sqlite and postgresql have one)")


def add(conn, rows: Iterable[tuple[int, int, str]], *, pg: PgText = PG) -> int:
    """Indexes ``(memory_id, collection_id, text)`` rows (executemany, in batches); returns how many. A memory
    id already indexed is an integrity error: remove it first to re-index it."""
    dialect = _dialect(conn)
    if dialect == "sqlite":
        stmt = text(f"INSERT INTO {TABLE} (rowid, text, collection_id) VALUES (:id, :text, :cid)")
    elif dialect == "postgresql":
        stmt = text(f"INSERT INTO {TABLE} (memory_id, collection_id, tsv) "
                    f"VALUES (:id, :cid, to_tsvector('{pg.config}', left(:text, {PG_MAX_CHARS})))")
    else:
        raise ValueError(f"no lexical index for the {dialect!r} dialect")
    n = 0
    batch: list[dict] = []
    for memory_id, collection_id, body in rows:
        batch.append({"id": int(memory_id), "cid": int(collection_id), "text": body})
        if len(batch) == CHUNK:
            conn.execute(stmt, batch)
            n += len(batch)
            batch = []
    if batch:
        conn.execute(stmt, batch)
        n += len(batch)
    return n


def remove(conn, memory_ids: Sequence[int]) -> None:
    """Drops the rows of ``memory_ids`` (ids not indexed are ignored)."""
    key = "rowid" if _dialect(conn) == "sqlite" else "memory_id"
    stmt = text(f"DELETE FROM {TABLE} WHERE {key} IN :ids").bindparams(bindparam("ids", expanding=True))
    ids = [int(i) for i in memory_ids]
    for start in range(0, len(ids), CHUNK):
        conn.execute(stmt, {"ids": ids[start:start + CHUNK]})


def remove_collection(conn, collection_id: int) -> None:
    """Drops every row of a collection."""
    conn.execute(text(f"DELETE FROM {TABLE} WHERE collection_id = :cid"), {"cid": int(collection_id)})


def count(conn, collection_id: int) -> int:
    """Rows indexed for a collection."""
    return int(conn.execute(text(f"SELECT count(*) FROM {TABLE} WHERE collection_id = :cid"),
                            {"cid": int(collection_id)}).scalar_one())


def search(conn, collection_id: int, query: str, k: int, *, pg: PgText = PG) -> list[tuple[int, float]]:
    """The ``k`` best memories of the collection for ``query``: ``(memory id, score)``, best first, higher better
    (ties by id). Empty when the query has no content word or ``k`` < 1."""
    return search_many(conn, collection_id, [query], k, pg=pg)[0]


def search_many(conn, collection_id: int, queries: Sequence[str], k: int, *,
                pg: PgText = PG) -> list[list[tuple[int, float]]]:
    """``search`` for each of ``queries``, with one prepared statement."""
    if k < 1:
        return [[] for _ in queries]
    dialect = _dialect(conn)
    if dialect == "sqlite":
        stmt = text(
            f"SELECT rowid AS id, -bm25({TABLE}) AS score FROM {TABLE} "
            f"WHERE {TABLE} MATCH :match AND collection_id = :cid ORDER BY rank, rowid LIMIT :k"
        )
        params = [None if (m := fts5_match(q)) is None else {"match": m} for q in queries]
    elif dialect == "postgresql":
        # The words are bound parameters joined into an OR query by PostgreSQL itself: each one goes through
        # plainto_tsquery (normalised by the configuration, stop words dropped; never parsed as query syntax).
        # The OR query is a one-row CTE read through scalar subqueries: a parameter of the statement's plan, so
        # the GIN index can serve ``tsv @@ query`` (a join against the CTE would scan every row).
        stmt = text(
            f"WITH q AS MATERIALIZED (SELECT string_agg(part::text, ' | ')::tsquery AS query "
            f"FROM unnest(CAST(:words AS text[])) AS w, plainto_tsquery('{pg.config}', w) AS part "
            f"WHERE numnode(part) > 0) "
            f"SELECT memory_id AS id, {pg.rank}(tsv, (SELECT query FROM q), {int(pg.normalization)}) AS score "
            f"FROM {TABLE} WHERE collection_id = :cid AND tsv @@ (SELECT query FROM q) "
            f"ORDER BY score DESC, memory_id LIMIT :k"
        )
        params = [{"words": terms} if (terms := query_terms(q)) else None for q in queries]
    else:
        raise ValueError(f"no lexical index for the {dialect!r} dialect")
    out: list[list[tuple[int, float]]] = []
    for p in params:
        if p is None:
            out.append([])
            continue
        rows = conn.execute(stmt, {**p, "cid": int(collection_id), "k": int(k)})
        out.append([(int(r.id), float(r.score)) for r in rows])
    return out
