"""The ``transfer_call`` tool: hand a phone caller over to a person or another line.

Built from the agent's ``transfers`` (:class:`~convoi.definitions.models.TransferDestination`)
with ``function_tool(fn, raw_schema=...)``: the LLM sees one tool whose ``destination`` parameter
is an enum of the destinations' names, each one's description listed in the tool description,
and an optional short ``summary``. The tool lets what the LLM is saying play out, then asks the
call (:meth:`~convoi.agent.controls.CallControls.transfer_caller`). On success the call is ending and
the tool returns nothing (no further reply); on failure it returns a result telling the LLM the
caller is still there, so it can say so.
"""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from typing import Any

from livekit.agents import RunContext, function_tool
from livekit.agents.llm import RawFunctionTool

from convoi.agent.controls import CallControls, TransferOutcome
from convoi.definitions.models import TransferDestination

__all__ = [
    "TRANSFER_TOOL",
    "TransferCallTool",
    "failure_result",
    "transfer_description",
    "transfer_schema",
    "transfer_tool",
]

TRANSFER_TOOL = "transfer_call"
"""The tool's name."""

_SUMMARY_LIMIT = 500

TransferCallTool = RawFunctionTool[
    [dict[str, object], RunContext[CallControls]], Coroutine[Any, Any, str | None]
]
"""The generated ``transfer_call`` tool."""


def transfer_description(destinations: Sequence[TransferDestination]) -> str:
    """The tool description: when to use it, then each destination's name and description."""
    lines = [
        "Transfer the caller to a person or another line. Use it only when one of the "
        "destinations below fits what the caller needs, and tell the caller in one short "
        "sentence that you are transferring them before calling it. Destinations:"
    ]
    lines += [f"- {d.name}: {d.description}" for d in destinations]
    return "\n".join(lines)


def transfer_schema(destinations: Sequence[TransferDestination]) -> dict[str, Any]:
    """The raw schema the LLM sees (``destination`` enum, optional ``summary``)."""
    return {
        "name": TRANSFER_TOOL,
        "description": transfer_description(destinations),
        "parameters": {
            "type": "object",
            "properties": {
                "destination": {
                    "type": "string",
                    "enum": [d.name for d in destinations],
                    "description": "Where to transfer the caller (one of the names above).",
                },
                "summary": {
                    "type": "string",
                    "description": "One or two sentences on who the caller is and what they need "
                    "(told to the person taking the call).",
                },
            },
            "required": ["destination"],
            "additionalProperties": False,
        },
    }


def failure_result(name: str, outcome: TransferOutcome) -> str:
    """The tool result the LLM reads when a transfer failed."""
    why = f" ({outcome.error})" if outcome.error else ""
    return (
        f"The transfer to {name} failed{why}. The caller is still on the line with you: tell "
        "them briefly that you could not connect them, and offer to help another way."
    )


def transfer_tool(destinations: Sequence[TransferDestination]) -> TransferCallTool:
    """The ``transfer_call`` tool for ``destinations`` (at least one)."""
    if not destinations:
        raise ValueError("transfer_call needs at least one destination")
    by_name = {d.name: d for d in destinations}

    async def transfer_call(
        raw_arguments: dict[str, object], context: RunContext[CallControls]
    ) -> str | None:
        # raw tools get their arguments unvalidated: an unknown name is answered, not raised
        name = raw_arguments.get("destination")
        destination = by_name.get(name) if isinstance(name, str) else None
        if destination is None:
            return f"Unknown destination {name!r}; use one of: {', '.join(by_name)}."
        summary = raw_arguments.get("summary")
        text = summary.strip()[:_SUMMARY_LIMIT] if isinstance(summary, str) else ""
        await context.wait_for_playout()  # the handover sentence is heard first
        outcome = await context.userdata.transfer_caller(destination, summary=text or None)
        return None if outcome.succeeded else failure_result(destination.name, outcome)

    return function_tool(transfer_call, raw_schema=transfer_schema(destinations))
