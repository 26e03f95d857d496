"""Transfer tools generated from a squad file: one ``transfer_to_<member>`` per destination.

Tools are built with ``function_tool(fn, raw_schema=...)``: the schema is exactly what the LLM
sees (name, the handoff's ``description``, one required ``reason`` string). A member only gets
tools for the destinations its ``handoffs`` list, so a transfer elsewhere cannot be expressed.
What a call does is up to the ``on_transfer`` handler (the runtime).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from livekit.agents import RunContext, function_tool
from livekit.agents.llm import RawFunctionTool

from convoi.definitions.models import Handoff, SquadMember

__all__ = [
    "REASON_DESCRIPTION",
    "TRANSFER_PREFIX",
    "TransferHandler",
    "TransferTool",
    "build_transfer_tools",
    "transfer_schema",
    "transfer_tool_name",
]

TRANSFER_PREFIX = "transfer_to_"

REASON_DESCRIPTION = "Why the caller is being transferred: what they need, in one short sentence."
"""Description of the ``reason`` parameter (what the LLM reads)."""

TransferHandler = Callable[[str, str | None, RunContext[Any]], Awaitable[object]]
"""``(destination member, reason or None, run context) → tool output``."""

TransferTool = RawFunctionTool[[dict[str, object], RunContext[Any]], Coroutine[Any, Any, object]]
"""A generated ``transfer_to_<member>`` tool (raw schema: one required ``reason`` string)."""


def transfer_tool_name(member_key: str) -> str:
    """The tool that transfers the caller to ``member_key``."""
    return f"{TRANSFER_PREFIX}{member_key}"


def transfer_schema(handoff: Handoff) -> dict[str, Any]:
    """The raw JSON schema of the transfer tool for ``handoff``."""
    return {
        "name": transfer_tool_name(handoff.to),
        "description": handoff.description,
        "parameters": {
            "type": "object",
            "properties": {"reason": {"type": "string", "description": REASON_DESCRIPTION}},
            "required": ["reason"],
            "additionalProperties": False,
        },
    }


def _transfer_tool(handoff: Handoff, on_transfer: TransferHandler) -> TransferTool:
    destination = handoff.to

    async def transfer(raw_arguments: dict[str, object], context: RunContext[Any]) -> object:
        # raw tools get the arguments unvalidated: a missing or blank reason is recorded as None
        reason = raw_arguments.get("reason")
        text = reason.strip() if isinstance(reason, str) else ""
        return await on_transfer(destination, text or None, context)

    return function_tool(transfer, raw_schema=transfer_schema(handoff))


def build_transfer_tools(member: SquadMember, on_transfer: TransferHandler) -> list[TransferTool]:
    """One transfer tool per destination of ``member``, in the order of its ``handoffs``."""
    return [_transfer_tool(handoff, on_transfer) for handoff in member.handoffs]
