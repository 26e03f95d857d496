"""The fleet's shared index: knowledge chunks in PostgreSQL, searched with its full-text search.

With ``CONVOI_KNOWLEDGE_DATABASE_URL`` set, every worker's main process publishes the chunks of
its documents under their content hash (:func:`publish`: once per hash, whichever worker comes
first, under an advisory lock) and job processes search PostgreSQL instead of the local SQLite
file (:class:`PgIndex`). The tables are the adapter's own (a cache, re-creatable from the
documents at any time), created if missing::

    convoi_knowledge_indexes(digest PK, chunks, built_at)
    convoi_knowledge_chunks(digest, kb_id, chunk_id, source, title, text, start, stop,
                            tsv tsvector GENERATED: title weight A, text weight B)   GIN(tsv)

Matching uses the English configuration (stemming, stop words) and any content word of the
caller's turn, as the SQLite backend does. Ranking is BM25-like: per query lexeme, its IDF (from
document counts kept per hash in ``convoi_knowledge_terms``) times ``ts_rank`` (normalised by
chunk length), summed; plain ``ts_rank_cd`` has no IDF and lets common words ("call") win. pgvector is not used: Debian 12's
archive has no ``postgresql-15-pgvector`` package.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import psycopg

from convoi.knowledge.errors import KnowledgeError
from convoi.knowledge.models import Chunk, Hit
from convoi.knowledge.query import terms

__all__ = ["SCHEMA", "PgIndex", "libpq_url", "publish"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS convoi_knowledge_indexes (
    digest text PRIMARY KEY,
    chunks integer NOT NULL,
    built_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS convoi_knowledge_chunks (
    digest text NOT NULL REFERENCES convoi_knowledge_indexes(digest) ON DELETE CASCADE,
    kb_id text NOT NULL,
    chunk_id text NOT NULL,
    source text NOT NULL,
    title text NOT NULL,
    text text NOT NULL,
    start integer NOT NULL,
    stop integer NOT NULL,
    tsv tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', title), 'A') || setweight(to_tsvector('english', text), 'B')
    ) STORED,
    PRIMARY KEY (digest, kb_id, chunk_id)
);
CREATE INDEX IF NOT EXISTS convoi_knowledge_chunks_tsv ON convoi_knowledge_chunks USING gin (tsv);
CREATE TABLE IF NOT EXISTS convoi_knowledge_terms (
    digest text NOT NULL REFERENCES convoi_knowledge_indexes(digest) ON DELETE CASCADE,
    word text NOT NULL,
    ndoc integer NOT NULL,
    PRIMARY KEY (digest, word)
);
"""
_TERMS = """
INSERT INTO convoi_knowledge_terms (digest, word, ndoc)
SELECT %(d)s, word, ndoc FROM ts_stat(
    format('SELECT tsv FROM convoi_knowledge_chunks WHERE digest = %%L', %(d)s::text))
"""
_SEARCH = """
WITH q AS (SELECT DISTINCT lexeme FROM unnest(to_tsvector('english', %(words)s))),
     s AS (SELECT word, ndoc FROM convoi_knowledge_terms
           WHERE digest = %(d)s AND word IN (SELECT lexeme FROM q)),
     n AS (SELECT chunks FROM convoi_knowledge_indexes WHERE digest = %(d)s)
SELECT c.chunk_id, c.kb_id, c.source, c.title, c.text, c.start, c.stop,
       sum(ln(1 + (n.chunks - s.ndoc + 0.5) / (s.ndoc + 0.5))
           * ts_rank(c.tsv, s.word::tsquery, 1)) AS rank
FROM convoi_knowledge_chunks c, s, n
WHERE c.digest = %(d)s AND c.kb_id = ANY(%(kbs)s) AND c.tsv @@ s.word::tsquery
GROUP BY c.digest, c.kb_id, c.chunk_id
ORDER BY rank DESC, c.chunk_id
LIMIT %(k)s
"""
_LOCK = 0x636F6E766F69  # pg_advisory_xact_lock key: one publisher at a time


def libpq_url(url: str) -> str:
    """``url`` as libpq takes it (a SQLAlchemy ``postgresql+psycopg://`` URL works too)."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+')[0]}{sep}{rest}" if sep else url


def publish(url: str, digest: str, chunks: Sequence[Chunk]) -> bool:
    """Store ``chunks`` under ``digest`` unless another worker already did; True if stored now."""
    try:
        with psycopg.connect(libpq_url(url)) as db, db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            db.execute(SCHEMA)
            if db.execute(
                "SELECT 1 FROM convoi_knowledge_indexes WHERE digest = %s", (digest,)
            ).fetchone():
                return False
            db.execute(
                "INSERT INTO convoi_knowledge_indexes (digest, chunks) VALUES (%s, %s)",
                (digest, len(chunks)),
            )
            with db.cursor() as cur:
                cur.executemany(
                    "INSERT INTO convoi_knowledge_chunks"
                    " (digest, kb_id, chunk_id, source, title, text, start, stop)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    [
                        (digest, c.kb_id, c.id, c.source, c.title, c.text, c.start, c.end)
                        for c in chunks
                    ],
                )
            db.execute(_TERMS, {"d": digest})
            return True
    except psycopg.Error as exc:
        raise KnowledgeError(f"could not publish the knowledge index: {exc}") from exc


class PgIndex:
    """Searches the chunks published under ``digest`` (one connection, opened on first use)."""

    def __init__(self, url: str, digest: str) -> None:
        self._url = libpq_url(url)
        self.digest = digest
        self._db: psycopg.Connection[tuple[object, ...]] | None = None
        self._lock = threading.Lock()

    def _connection(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._db is None or self._db.closed:
            self._db = psycopg.connect(self._url, autocommit=True)
        return self._db

    def search(self, query: str, kb_ids: Sequence[str], k: int = 3) -> list[Hit]:
        """Full-text search over the chunks of ``kb_ids`` (any content word), best first."""
        words = terms(query)
        if not words or not kb_ids or k < 1:
            return []
        params = {"words": " ".join(words), "d": self.digest, "kbs": list(kb_ids), "k": k}
        try:
            with self._lock:
                rows = self._connection().execute(_SEARCH, params).fetchall()
        except psycopg.Error as exc:
            with self._lock:
                self._db = None  # reconnect on the next turn
            raise KnowledgeError(f"knowledge search failed: {type(exc).__name__}") from exc
        return [
            Hit(Chunk(str(c), str(kb), str(s), str(t), str(x), _int(a), _int(b)), _float(r))
            for c, kb, s, t, x, a, b, r in rows
        ]

    def close(self) -> None:
        """Close the connection, if open."""
        if self._db is not None:
            self._db.close()


def _int(value: object) -> int:
    if not isinstance(value, int):
        raise KnowledgeError(f"unexpected column value {type(value).__name__}")
    return value


def _float(value: object) -> float:
    if not isinstance(value, int | float):
        raise KnowledgeError(f"unexpected rank {type(value).__name__}")
    return float(value)
