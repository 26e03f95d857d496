"""Workforce (squad) calls: members that hand the caller to each other through function tools.

A squad call runs one livekit ``Agent`` per member (:class:`SquadMemberAgent`, a
:class:`~convoi.agent.ConvoiAgent` whose ``id`` is the member key), each with its own
instructions, LLM, TTS voice and STT. :class:`SquadRuntime` owns the call's members, the current
member and its handoff history; the call that runs it (:class:`convoi.worker.call.Call`) reads
them to report.

Settings precedence (applied by :func:`convoi.callspec.resolve_call`, lowest first):

1. the agent definition (``agents_config/agents/*.yaml``);
2. the member's ``overrides`` in the squad file;
3. the call's ``agent_overrides``, applied to *every* member.

Handoffs (docs/architecture.md §6):

- each member gets one ``transfer_to_<member>`` tool per destination listed in its ``handoffs``
  (:mod:`convoi.squads.tools`), so a transfer to any other member cannot be expressed; the tool's
  description is the handoff's ``description`` and it takes one required ``reason`` string;
- the new member starts with the conversation carried by the squad's ``context_policy``
  (:mod:`convoi.squads.context`), then speaks its greeting (or a generated opener) in its own
  voice; the old member says nothing more;
- at most ``max_handoffs`` transfers per call: a further one is refused with a tool result the
  LLM reads, the caller stays with the current member and a warning is logged;
- every completed handoff is recorded in :attr:`SquadRuntime.handoffs`
  (:class:`~convoi.reporting.events.Handoff`: from, to, reason, time).
"""

from convoi.squads.context import carry_context
from convoi.squads.runtime import SquadMemberAgent, SquadRuntime
from convoi.squads.tools import build_transfer_tools, transfer_tool_name

__all__ = [
    "SquadMemberAgent",
    "SquadRuntime",
    "build_transfer_tools",
    "carry_context",
    "transfer_tool_name",
]
