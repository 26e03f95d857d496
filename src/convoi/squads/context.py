"""What a member taking over a call knows of the conversation so far (``context_policy``).

- ``all``: the previous member's whole conversation (messages and tool calls; its system
  instructions are replaced by the new member's own);
- ``last_n``: only the last ``context_last_n`` user/assistant messages;
- ``none``: nothing; the new member starts from its own instructions.
"""

from __future__ import annotations

from typing import Literal

from livekit.agents.llm import ChatContext, ChatItem, ChatMessage

__all__ = ["ContextPolicy", "carry_context"]

ContextPolicy = Literal["all", "last_n", "none"]


def carry_context(chat_ctx: ChatContext, policy: ContextPolicy, last_n: int) -> ChatContext:
    """A new chat context holding what ``policy`` carries over from ``chat_ctx``."""
    if policy == "none":
        return ChatContext.empty()
    conversation = chat_ctx.copy(
        exclude_instructions=True,
        exclude_empty_message=True,
        exclude_handoff=True,
        exclude_config_update=True,
    )
    if policy == "all":
        return conversation
    messages: list[ChatItem] = [
        item
        for item in conversation.items
        if isinstance(item, ChatMessage) and item.role in ("user", "assistant")
    ]
    return ChatContext(messages[-last_n:])
