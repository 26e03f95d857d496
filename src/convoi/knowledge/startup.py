"""The worker's side of the index: build it when stale (main process), open it (job process)."""

from __future__ import annotations

import logging
from pathlib import Path

from convoi.definitions.models import Definitions
from convoi.knowledge.errors import KnowledgeError
from convoi.knowledge.index import IndexPlan, ensure_index, plan_index
from convoi.knowledge.retrieval import Retriever
from convoi.knowledge.search import Fts5Index
from convoi.knowledge.settings import KnowledgeSettings

__all__ = ["open_retriever", "prepare_index"]

logger = logging.getLogger("convoi.knowledge")


def prepare_index(
    defs: Definitions, config_dir: Path, settings: KnowledgeSettings, *, force: bool = False
) -> tuple[IndexPlan, bool]:
    """Build the index of ``defs`` unless an up-to-date one is on disk; the plan and whether it
    was built now. Runs in the worker's main process before job processes start."""
    plan, built = ensure_index(defs, config_dir, settings.cache_dir, force=force)
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
