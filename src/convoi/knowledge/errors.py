"""The knowledge package's one error type."""

from __future__ import annotations

__all__ = ["KnowledgeError"]


class KnowledgeError(Exception):
    """An index cannot be built, opened or searched (missing, corrupt, a database error)."""
