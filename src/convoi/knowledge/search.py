"""Searching an index: the :class:`KnowledgeIndex` protocol and its SQLite FTS5 (BM25) backend.

Every backend answers ``search(query, kb_ids, k)`` with at most ``k`` hits from the named
knowledge bases only, best first, and raises :class:`~convoi.knowledge.errors.KnowledgeError`
when it cannot (a missing or corrupt index, a database error). :class:`Fts5Index` opens the file
read-only and immutable (``file:…?mode=ro&immutable=1``): any number of job processes share it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from convoi.knowledge.errors import KnowledgeError
from convoi.knowledge.models import Chunk, Hit
from convoi.knowledge.query import fts_query

__all__ = ["Fts5Index", "KnowledgeIndex"]

TITLE_WEIGHT = 2.0
"""BM25 weight of a chunk's heading relative to its text."""


class KnowledgeIndex(Protocol):
    """Something that finds chunks for a query."""

    def search(self, query: str, kb_ids: Sequence[str], k: int = 3) -> list[Hit]:
        """At most ``k`` hits from ``kb_ids``, best first (raises KnowledgeError)."""
        ...


class Fts5Index:
    """A read-only connection to an index file written by :func:`~convoi.knowledge.index.write_index`."""

    def __init__(self, db: sqlite3.Connection, path: Path, chunks: int) -> None:
        self._db = db
        self._lock = threading.Lock()
        self.path = path
        self.chunks = chunks
        """How many chunks the index holds."""

    @classmethod
    def open(cls, path: Path) -> Fts5Index:
        """Open ``path`` read-only; KnowledgeError when it is missing or not an index."""
        if not path.is_file():
            raise KnowledgeError(f"knowledge index {path.name} is missing")
        uri = f"{path.resolve().as_uri()}?mode=ro&immutable=1"
        try:
            db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            return cls(db, path, int(meta["chunks"]))
        except (sqlite3.Error, KeyError, ValueError) as exc:
            raise KnowledgeError(f"knowledge index {path.name} is unreadable: {exc}") from exc

    def search(self, query: str, kb_ids: Sequence[str], k: int = 3) -> list[Hit]:
        """BM25 over heading and text of the chunks of ``kb_ids`` (any content word matches)."""
        match = fts_query(query)
        if match is None or not kb_ids or k < 1:
            return []
        marks = ",".join("?" * len(kb_ids))
        sql = (
            "SELECT chunk_id, kb_id, source, title, text, start, stop,"
            f" bm25(chunks, 0, 0, 0, {TITLE_WEIGHT}, 1.0, 0, 0) AS rank"
            f" FROM chunks WHERE chunks MATCH ? AND kb_id IN ({marks}) ORDER BY rank LIMIT ?"
        )
        try:
            with self._lock:
                rows = self._db.execute(sql, (match, *kb_ids, k)).fetchall()
        except sqlite3.Error as exc:
            raise KnowledgeError(f"knowledge search failed: {exc}") from exc
        return [
            Hit(Chunk(cid, kb, src, title, text, int(start), int(stop)), -float(rank))
            for cid, kb, src, title, text, start, stop, rank in rows
        ]

    def all_chunks(self) -> list[Chunk]:
        """Every chunk of the index (benchmarks, other backends built from it)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT chunk_id, kb_id, source, title, text, start, stop FROM chunks"
            ).fetchall()
        return [Chunk(c, kb, s, t, x, int(a), int(b)) for c, kb, s, t, x, a, b in rows]

    def close(self) -> None:
        """Close the connection."""
        self._db.close()
