"""The worker's side of the index: build it when stale (main process), open it (job process)."""

from __future__ import annotations

import logging
from pathlib import Path

from convoi.definitions.models import Definitions
from convoi.knowledge.chunking import chunk_document
from convoi.knowledge.errors import KnowledgeError
from convoi.knowledge.index import IndexPlan, ensure_index, plan_index
from convoi.knowledge.postgres import PgIndex, publish
from convoi.knowledge.retrieval import Retriever
from convoi.knowledge.search import Fts5Index
from convoi.knowledge.settings import KnowledgeSettings

__all__ = ["open_retriever", "prepare_index", "shared_key"]

logger = logging.getLogger("convoi.knowledge")


def shared_key(path: Path) -> str:
    """The content hash an index file is named after (its key in a shared PostgreSQL index)."""
    return path.stem.removeprefix("knowledge-")


def prepare_index(
    defs: Definitions, config_dir: Path, settings: KnowledgeSettings, *, force: bool = False
) -> tuple[IndexPlan, bool]:
    """Build the index of ``defs`` unless an up-to-date one is on disk; the plan and whether it
    was built now. Runs in the worker's main process before job processes start."""
    plan, built = ensure_index(defs, config_dir, settings.cache_dir, force=force)
    if settings.database_url is not None:
        chunks = [c for doc in plan.documents for c in chunk_document(doc)]
        published = publish(settings.database_url.get_secret_value(), shared_key(plan.path), chunks)
        logger.info("knowledge index %s in PostgreSQL", "published" if published else "found")
    logger.info(
        "knowledge index %s",
        "built" if built else "up to date",
        extra={"index": str(plan.path), "documents": len(plan.documents)},
    )
    return plan, built


def open_retriever(
    defs: Definitions, config_dir: Path, settings: KnowledgeSettings, index: Path | None = None
) -> Retriever:
    """The job process's retriever over ``index`` (default: where the current documents' index
    belongs). A missing or unreadable index gives a retriever that reports why on every turn."""
    path = index or plan_index(defs, config_dir, settings.cache_dir).path
    if settings.database_url is not None:
        shared = PgIndex(settings.database_url.get_secret_value(), shared_key(path))
        return Retriever(shared, top_k=settings.top_k, timeout=settings.timeout_seconds)
    try:
        opened: Fts5Index | None = Fts5Index.open(path)
        reason = ""
    except KnowledgeError as exc:
        if any(kb.documents for kb in defs.knowledge_bases.values()):
            logger.warning("knowledge retrieval unavailable: %s", exc)
        opened, reason = None, str(exc)
    return Retriever(
        opened, top_k=settings.top_k, timeout=settings.timeout_seconds, unavailable=reason
    )
