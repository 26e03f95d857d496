"""Retrieval for one turn of a call: search with a time bound, never raise, say what happened.

A :class:`Retriever` holds the job process's index (or why there is none). For each completed
user turn the agent asks it for the chunks of its knowledge bases; the answer is a
:class:`Retrieval` whose :meth:`~Retrieval.report` rides on the user's chat message into the
call's latency figures (``retrieval_seconds``, ``retrieval_chunks``, ``retrieval_error``). A
missing or corrupt index, a database error or a search slower than the time bound gives a
Retrieval with an ``error`` and no hits: the agent answers without context.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from convoi.knowledge.errors import KnowledgeError
from convoi.knowledge.models import Hit
from convoi.knowledge.search import KnowledgeIndex

__all__ = ["RETRIEVAL_EXTRA_KEY", "Retrieval", "Retriever", "context_message"]

logger = logging.getLogger("convoi.knowledge")

RETRIEVAL_EXTRA_KEY = "convoi.retrieval"
"""``ChatMessage.extra`` key of a user message's :meth:`Retrieval.report`."""

CONTEXT_PREAMBLE = (
    "Knowledge base excerpts for the caller's last message. Answer from them when they are "
    "relevant; never read them out verbatim, and do not mention that you looked them up."
)


@dataclass(frozen=True)
class Retrieval:
    """What one turn's retrieval found (or why it found nothing)."""

    hits: tuple[Hit, ...] = ()
    seconds: float = 0.0
    error: str | None = None
    """Why retrieval failed (the agent answered without context), else None."""
    kb_ids: tuple[str, ...] = field(default_factory=tuple)

    def report(self) -> dict[str, Any]:
        """The turn's retrieval figures, as the call's latency entry holds them."""
        return {
            "retrieval_seconds": round(self.seconds, 6),
            "retrieval_chunks": [h.chunk.id for h in self.hits],
            "retrieval_error": self.error,
        }


def context_message(hits: Sequence[Hit]) -> str:
    """The text the LLM receives for one turn: a preamble, then each chunk under its heading."""
    parts = [CONTEXT_PREAMBLE]
    for hit in hits:
        parts.append(f"[{hit.chunk.title}]\n{hit.chunk.text.strip()}")
    return "\n\n".join(parts)


class Retriever:
    """Searches the job process's index for a turn, within ``timeout`` seconds.

    ``index`` None means there is no usable index; ``unavailable`` says why (reported per turn)."""

    def __init__(
        self,
        index: KnowledgeIndex | None,
        *,
        top_k: int = 3,
        timeout: float = 1.0,
        unavailable: str = "knowledge index unavailable",
    ) -> None:
        self.index = index
        self.top_k = top_k
        self.timeout = timeout
        self.unavailable = unavailable

    async def retrieve(self, kb_ids: Sequence[str], query: str) -> Retrieval:
        """The top chunks of ``kb_ids`` for ``query``; never raises (see :class:`Retrieval`)."""
        ids = tuple(kb_ids)
        started = time.perf_counter()
        if self.index is None:
            return Retrieval(seconds=0.0, error=self.unavailable, kb_ids=ids)
        index = self.index
        try:
            hits = await asyncio.wait_for(
                asyncio.to_thread(index.search, query, ids, self.top_k), timeout=self.timeout
            )
        except TimeoutError:
            error: str = f"knowledge search took longer than {self.timeout:g} s"
        except KnowledgeError as exc:
            error = str(exc)
        except Exception as exc:  # a backend bug must not silence the agent either
            error = f"knowledge search failed: {type(exc).__name__}"
        else:
            return Retrieval(tuple(hits), time.perf_counter() - started, None, ids)
        logger.warning("knowledge retrieval failed: %s", error)
        return Retrieval((), time.perf_counter() - started, error, ids)
