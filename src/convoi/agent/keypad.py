"""The ``send_dtmf`` tool: the agent presses keys on the phone (navigating an IVR menu).

Offered when an agent's ``tools`` name ``send_dtmf``. The LLM gives the keys as one string;
:func:`parse_keys` accepts only ``0``-``9``, ``*`` and ``#`` (spaces and commas between them are
dropped) and refuses anything else with a message the LLM reads. The call presses them
(:meth:`~convoi.agent.controls.CallControls.press_keys`: livekit-sip sends them to the phone as
RFC 4733 telephone-events). The tool asks for no reply of its own: after pressing keys the agent
listens to what the menu says next.
"""

from __future__ import annotations

from typing import Annotated, Any

from livekit.agents import RunContext, ToolError, function_tool, llm
from pydantic import Field

from convoi.agent.controls import CallControls

__all__ = ["KEYPAD", "MAX_KEYS", "SEND_DTMF_DESCRIPTION", "parse_keys", "send_dtmf_tool"]

KEYPAD = "0123456789*#"
"""The keys the agent may press."""
MAX_KEYS = 32
"""The most keys one ``send_dtmf`` call presses."""

SEND_DTMF_DESCRIPTION = (
    "Press keys on the telephone keypad during this phone call, as a person would: to choose an "
    "option of an automated phone menu (for example '2' when it says 'press 2 for billing') or "
    "to enter a number it asks for (for example '12345#'). The keys are pressed in order. Use "
    "it only when the other side asks for keys to be pressed."
)
"""The ``send_dtmf`` tool's description: the prompt the LLM reads."""

_SEPARATORS = str.maketrans("", "", " ,-")


def parse_keys(digits: str) -> str:
    """The keys to press in ``digits`` (separators removed); :class:`ToolError` when there are
    none, too many, or anything but ``0``-``9``, ``*`` and ``#``."""
    keys = digits.translate(_SEPARATORS)
    if not keys:
        raise ToolError("no keys given: send the keys to press, e.g. '1' or '1234#'")
    if bad := sorted({k for k in keys if k not in KEYPAD}):
        raise ToolError(
            f"cannot press {', '.join(repr(k) for k in bad)}: only the keys 0-9, * and # exist"
        )
    if len(keys) > MAX_KEYS:
        raise ToolError(f"at most {MAX_KEYS} keys at a time")
    return keys


async def _send_dtmf(
    context: RunContext[CallControls],
    digits: Annotated[
        str, Field(description="The keys to press, in order: only 0-9, * and #, e.g. '2'.")
    ],
) -> llm.ToolResult:
    keys = parse_keys(digits)
    await context.userdata.press_keys(keys)
    return llm.ToolResult(f"Pressed {' '.join(keys)}.", reply_required=False)


def send_dtmf_tool() -> llm.FunctionTool[..., Any]:
    """The ``send_dtmf`` function tool for an agent whose ``tools`` name it."""
    return function_tool(_send_dtmf, name="send_dtmf", description=SEND_DTMF_DESCRIPTION)
