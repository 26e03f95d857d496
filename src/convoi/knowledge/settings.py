"""Where the knowledge index lives and how much of it a turn gets (from the environment)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["KnowledgeSettings", "default_cache_dir"]


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/convoi/knowledge`` (``~/.cache/convoi/knowledge``)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "convoi" / "knowledge"


class KnowledgeSettings(BaseSettings):
    """Knowledge-base retrieval settings of the worker."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    cache_dir: Path = Field(default_factory=default_cache_dir, alias="CONVOI_KNOWLEDGE_DIR")
    """Folder of the on-disk knowledge index (``knowledge-<content hash>.sqlite``), built by
    ``convoi-worker index`` or at worker start-up when the documents changed."""
    top_k: int = Field(3, alias="CONVOI_KNOWLEDGE_TOP_K", ge=1, le=20)
    """Chunks given to the LLM per user turn."""
    timeout_seconds: float = Field(1.0, alias="CONVOI_KNOWLEDGE_TIMEOUT_SECONDS", gt=0, le=30)
    """Bound on one turn's search; a slower one is a retrieval failure (the agent answers
    without context)."""
    database_url: SecretStr | None = Field(None, alias="CONVOI_KNOWLEDGE_DATABASE_URL")
    """PostgreSQL URL (``postgresql://…``) of an index shared by a fleet of workers: each
    worker publishes its documents' chunks there at start-up (once per content hash) and job
    processes search it with PostgreSQL full-text search instead of the local SQLite file."""
