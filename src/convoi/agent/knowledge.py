"""One knowledge-base search per caller turn, shared by every generation of that turn.

livekit-agents may start a reply before the caller's turn is over (preemptive generation, on the
final transcript) and keeps it only if the turn's hook (``on_user_turn_completed``) leaves the
turn's context unchanged. So the excerpts are not added in the hook but where the LLM request is
built (``llm_node``, which the early reply and the normal one both go through), and the search
runs once per transcript: the early reply starts it, the hook and any later request of the turn
(after a tool call) reuse it.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from livekit.agents import llm
from livekit.agents.llm import ChatContext

from convoi.knowledge.retrieval import Retrieval, context_message

__all__ = ["TurnKnowledge", "last_user_text"]

KEPT_SEARCHES = 4
"""Searches remembered (by transcript): the turn's, and a few before it."""


def last_user_text(chat_ctx: ChatContext) -> str:
    """The text of the context's last user message ('' when there is none)."""
    for item in reversed(chat_ctx.items):
        if isinstance(item, llm.ChatMessage) and item.role == "user":
            return item.text_content or ""
    return ""


class TurnKnowledge:
    """Searches ``search`` once per query and adds what it found to a turn's LLM context."""

    def __init__(self, search: Callable[[str], Awaitable[Retrieval | None]]) -> None:
        self._search = search
        self._found: OrderedDict[str, asyncio.Task[Retrieval | None]] = OrderedDict()

    def lookup(self, query: str) -> asyncio.Task[Retrieval | None]:
        """The search for ``query``: started now, or the one already under way or done."""
        key = query.strip()
        task = self._found.get(key)
        if task is None:

            async def search() -> Retrieval | None:
                return await self._search(key)

            task = asyncio.ensure_future(search())
            self._found[key] = task
            while len(self._found) > KEPT_SEARCHES:
                self._found.popitem(last=False)
        return task

    async def with_excerpts(self, chat_ctx: ChatContext) -> ChatContext:
        """``chat_ctx``, or a copy with the excerpts for its last user message right after that
        message (a system message; for this request only, never the kept history)."""
        query = last_user_text(chat_ctx)
        if not query.strip():
            return chat_ctx
        found = await self.lookup(query)
        if found is None or not found.hits:
            return chat_ctx
        ctx = chat_ctx.copy()
        position = max(
            i
            for i, item in enumerate(ctx.items)
            if isinstance(item, llm.ChatMessage) and item.role == "user"
        )
        excerpt = llm.ChatMessage(role="system", content=[context_message(found.hits)])
        ctx.items.insert(position + 1, excerpt)
        return ctx
