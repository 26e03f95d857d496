"""The per-call voice agent, below both the worker and the squads.

- :class:`ConvoiAgent`: one effective agent in an AgentSession (instructions, its own STT, LLM and
  TTS, the greeting on entering, the built-in ``end_call`` tool, STT audio counted for billing);
- :class:`CallControls`: what the agent asks of the call that owns it (the session's userdata);
  :class:`DetachedControls` for sessions without a call;
- :func:`transfer_tool`: the ``transfer_call`` tool of an agent with ``transfers`` (phone calls).

The greeting rendered ahead of time lives in :mod:`convoi.worker.greeting_audio`.
"""

from convoi.agent.agent import END_CALL_DESCRIPTION, OPENER_INSTRUCTIONS, ConvoiAgent
from convoi.agent.controls import CallControls, DetachedControls, TransferOutcome
from convoi.agent.transfer import TRANSFER_TOOL, transfer_tool

__all__ = [
    "END_CALL_DESCRIPTION",
    "OPENER_INSTRUCTIONS",
    "TRANSFER_TOOL",
    "CallControls",
    "ConvoiAgent",
    "DetachedControls",
    "TransferOutcome",
    "transfer_tool",
]
