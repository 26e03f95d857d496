"""What a knowledge base is made of once read: documents, their chunks, and search hits."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Chunk", "Document", "Hit"]


@dataclass(frozen=True)
class Document:
    """One source file of a knowledge base, as text."""

    kb_id: str
    source: str
    """Path of the file relative to the knowledge base's folder (``billing/refunds.md``)."""
    text: str


@dataclass(frozen=True)
class Chunk:
    """A contiguous span of a document: what a search returns and the LLM reads."""

    id: str
    """``<source stem>#<section slug>`` (``-2``, ``-3``… when a long section is split)."""
    kb_id: str
    source: str
    title: str
    """The heading of the section the chunk belongs to (the file name before any heading)."""
    text: str
    """Exactly ``document.text[start:end]``."""
    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end or self.end - self.start != len(self.text):
            raise ValueError("a chunk's bounds must match its text")


@dataclass(frozen=True)
class Hit:
    """A chunk found for a query, with its score (higher is better, comparable within a query)."""

    chunk: Chunk
    score: float
