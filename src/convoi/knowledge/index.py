"""The on-disk knowledge index: one SQLite FTS5 file for every knowledge base, keyed by content.

:func:`plan_index` reads the definitions' documents and names the index file after a hash of
their content (and of the chunker's version): ``<cache dir>/knowledge-<hash>.sqlite``. Documents
that change get a new file; unchanged ones reuse the old. :func:`ensure_index` builds the file
when it is missing (``convoi-worker index`` and the worker's main process at start-up, before any
job process starts), writing a temporary file and renaming it, so a reader never sees half an
index. Job processes open it read-only (:class:`convoi.knowledge.search.Fts5Index`): nothing is
re-indexed per process or per call, and the corpus stays on disk (SQLite's page cache, not the
process's heap).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from convoi.definitions.models import Definitions
from convoi.knowledge.chunking import CHUNKER_VERSION, DEFAULT_MAX_CHARS, chunk_document
from convoi.knowledge.models import Chunk, Document
from convoi.knowledge.sources import SourceProblem, read_documents

__all__ = ["IndexPlan", "build_index", "ensure_index", "plan_index", "write_index"]

SCHEMA_VERSION = "1"


@dataclass(frozen=True)
class IndexPlan:
    """What the index of a set of definitions holds and where it lives."""

    path: Path
    digest: str
    documents: tuple[Document, ...]
    problems: tuple[tuple[str, SourceProblem], ...]
    """``(kb_id, problem)`` for documents that cannot be indexed."""


def _digest(documents: Iterable[Document], max_chars: int) -> str:
    h = hashlib.sha256(f"convoi-knowledge {SCHEMA_VERSION} {CHUNKER_VERSION} {max_chars}".encode())
    for doc in sorted(documents, key=lambda d: (d.kb_id, d.source)):
        h.update(f"\0{doc.kb_id}\0{doc.source}\0".encode())
        h.update(hashlib.sha256(doc.text.encode()).digest())
    return h.hexdigest()


def plan_index(
    defs: Definitions, config_dir: Path, cache_dir: Path, max_chars: int = DEFAULT_MAX_CHARS
) -> IndexPlan:
    """Read the documents of every knowledge base that names some, and where their index goes."""
    docs: list[Document] = []
    problems: list[tuple[str, SourceProblem]] = []
    for kb in defs.knowledge_bases.values():
        if kb.documents is None:
            continue
        found = read_documents(kb.id, Path(config_dir) / kb.documents, kb.documents)
        docs += found.documents
        problems += [(kb.id, p) for p in found.problems]
    digest = _digest(docs, max_chars)
    return IndexPlan(
        Path(cache_dir) / f"knowledge-{digest[:24]}.sqlite", digest, tuple(docs), tuple(problems)
    )


def write_index(chunks: Iterable[Chunk], path: Path, digest: str = "") -> int:
    """Write ``chunks`` as an FTS5 index at ``path`` (atomically replaced); their number."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".knowledge-", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        db = sqlite3.connect(tmp)
        try:
            db.executescript(
                "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                "CREATE VIRTUAL TABLE chunks USING fts5("
                " chunk_id UNINDEXED, kb_id UNINDEXED, source UNINDEXED, title, text,"
                " start UNINDEXED, stop UNINDEXED, tokenize='porter unicode61');"
            )
            rows = [(c.id, c.kb_id, c.source, c.title, c.text, c.start, c.end) for c in chunks]
            db.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            db.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [("schema", SCHEMA_VERSION), ("digest", digest), ("chunks", str(len(rows)))],
            )
            db.execute("INSERT INTO chunks(chunks) VALUES ('optimize')")
            db.commit()
        finally:
            db.close()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(rows)


def build_index(plan: IndexPlan, max_chars: int = DEFAULT_MAX_CHARS) -> int:
    """Chunk the plan's documents and write its index; the number of chunks."""
    chunks = [c for doc in plan.documents for c in chunk_document(doc, max_chars)]
    return write_index(chunks, plan.path, plan.digest)


def ensure_index(
    defs: Definitions,
    config_dir: Path,
    cache_dir: Path,
    *,
    force: bool = False,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> tuple[IndexPlan, bool]:
    """The index of ``defs``, built unless an up-to-date one exists (or ``force``); returns the
    plan and whether it was built now."""
    plan = plan_index(defs, config_dir, cache_dir, max_chars)
    if plan.path.is_file() and not force:
        return plan, False
    build_index(plan, max_chars)
    return plan, True
