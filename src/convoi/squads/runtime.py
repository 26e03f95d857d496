"""One squad call at run time: its member agents, who is speaking and the handoffs so far.

:class:`SquadRuntime` builds each member as a :class:`SquadMemberAgent` (id = member key, its own
instructions, LLM, TTS voice and STT) and answers the members' transfer tools:

- a granted transfer returns ``(new member agent, ToolResult(..., reply_required=False))``:
  livekit-agents switches the session to the new agent and, because no tool output asks for a
  reply, the old member's LLM is not called again; the new member then speaks on entering;
- a transfer beyond the squad's ``max_handoffs`` (or a second one in the same turn) returns a
  plain refusal message, which the current member's LLM reads and answers: the caller stays put.

A handoff is recorded (as the reported :class:`~convoi.reporting.events.Handoff`) when the new
member actually takes over (its ``on_enter``), so a transfer that livekit drops (e.g. an
interrupted turn) is never reported. The runtime is the only holder of the current member.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from livekit.agents import Agent as LivekitAgent
from livekit.agents import RunContext
from livekit.agents.llm import ChatContext, ToolResult

from convoi.agent import ConvoiAgent
from convoi.callspec import EffectiveAgent, ResolvedCall
from convoi.definitions.models import Agent, Squad
from convoi.pipeline.factory import Pipeline, build_pipeline
from convoi.reporting.events import Handoff
from convoi.settings import WorkerSettings
from convoi.squads.context import carry_context
from convoi.squads.tools import build_transfer_tools

__all__ = [
    "HANDOFF_OPENER",
    "SquadMemberAgent",
    "SquadRuntime",
    "refusal_message",
]

logger = logging.getLogger("convoi.squads")

HANDOFF_OPENER = (
    "The caller has just been transferred to you from your colleague ({from_member}){because}. "
    "Introduce yourself in one short sentence and carry on helping them."
)
"""What a member without a first_message is asked to say on taking over a call."""


def refusal_message(handoffs: int) -> str:
    """The tool result a transfer beyond ``max_handoffs`` answers with."""
    return (
        f"Transfer refused: this call already had {handoffs} transfers (the workforce's "
        "max_handoffs). Stay with the caller and help them yourself."
    )


@dataclass(frozen=True)
class _Transfer:
    """A granted transfer whose new member has not entered yet."""

    from_member: str
    to_member: str
    reason: str | None
    speech_id: str


class SquadMemberAgent(ConvoiAgent):
    """A squad member in the session: a ConvoiAgent with its transfer tools.

    ``arrival`` is the transfer that brought the caller to it (None for the start member). On
    entering it tells the runtime it took over, then speaks its greeting; without one, a member
    that was transferred to asks its LLM for a short handoff opener.
    """

    def __init__(
        self,
        effective: EffectiveAgent,
        *,
        runtime: SquadRuntime,
        pipeline: Pipeline,
        chat_ctx: ChatContext | None = None,
        arrival: _Transfer | None = None,
    ) -> None:
        self._runtime = runtime
        self.arrival = arrival
        member = runtime.squad.members[effective.key]
        super().__init__(
            effective,
            stt=pipeline.stt,
            llm=pipeline.llm,
            tts=pipeline.tts,
            tools=build_transfer_tools(member, self._transfer),
            chat_ctx=chat_ctx,
        )

    async def _transfer(
        self, to: str, reason: str | None, context: RunContext[Any]
    ) -> TransferResult:
        return self._runtime._transfer(self, to, reason, context)

    async def on_enter(self) -> None:
        self._runtime._entered(self)
        if self.arrival is not None and not self.effective.greeting:
            self.session.generate_reply(instructions=self._runtime._opener(self.arrival))
            return
        await super().on_enter()


PipelineFactoryFn = Callable[[Agent, WorkerSettings], Pipeline]
"""Effective agent → plugins (the worker's :func:`~convoi.pipeline.build_pipeline`, or fakes)."""

TransferResult = tuple[LivekitAgent, ToolResult] | ToolResult | str
"""What a transfer tool answers: the new member and a silent tool result, or a refusal."""


class SquadRuntime:
    """The members, the current member and the handoffs of one squad call.

    Pipelines (plugin objects, which connect only when used) are built for every member up
    front, so a missing provider key fails the call before it starts, not mid-call.
    Read :attr:`handoffs` and :attr:`current_member` to report the call.
    """

    def __init__(
        self,
        call: ResolvedCall,
        settings: WorkerSettings,
        pipeline_factory: PipelineFactoryFn = build_pipeline,
    ) -> None:
        if call.squad is None:
            raise ValueError("not a squad call")
        self.call = call
        self.squad: Squad = call.squad
        self.pipelines: dict[str, Pipeline] = {
            key: pipeline_factory(member.agent, settings) for key, member in call.members.items()
        }
        self.handoffs: list[Handoff] = []
        """Completed transfers, in order."""
        self.refused: int = 0
        """Transfers refused (``max_handoffs`` reached, or a second one in the same turn)."""
        self._current = self.squad.start_member
        self._pending: _Transfer | None = None

    @property
    def current_member(self) -> str:
        """Key of the member talking to the caller (the start member until a handoff)."""
        return self._current

    def start_agent(self) -> SquadMemberAgent:
        """The agent the call starts with."""
        return self.member_agent(self.squad.start_member)

    def member_agent(
        self, key: str, *, chat_ctx: ChatContext | None = None, arrival: _Transfer | None = None
    ) -> SquadMemberAgent:
        """A fresh agent for member ``key`` (one per stint: an Agent runs in one activity)."""
        return SquadMemberAgent(
            self.call.members[key],
            runtime=self,
            pipeline=self.pipelines[key],
            chat_ctx=chat_ctx,
            arrival=arrival,
        )

    def _log_fields(self, **fields: Any) -> dict[str, Any]:
        return {"call_id": self.call.spec.call_id, "squad": self.squad.id, **fields}

    def _transfer(
        self, owner: SquadMemberAgent, to: str, reason: str | None, context: RunContext[Any]
    ) -> TransferResult:
        from_member = owner.effective.key
        speech_id = context.speech_handle.id
        pending = self._pending
        if pending is not None and pending.speech_id == speech_id:
            # livekit ignores a turn returning two agents; answer the extra call without a reply
            self.refused += 1
            return ToolResult(
                f"Transfer refused: the caller is already being transferred to "
                f"{pending.to_member}.",
                reply_required=False,
            )
        if len(self.handoffs) >= self.squad.max_handoffs:
            self.refused += 1
            logger.warning(
                "transfer refused: max_handoffs reached",
                extra=self._log_fields(
                    from_member=from_member,
                    to_member=to,
                    reason=reason,
                    max_handoffs=self.squad.max_handoffs,
                ),
            )
            return refusal_message(len(self.handoffs))

        transfer = _Transfer(from_member, to, reason, speech_id)
        carried = carry_context(
            owner.chat_ctx, self.squad.context_policy, self.squad.context_last_n
        )
        agent = self.member_agent(to, chat_ctx=carried, arrival=transfer)
        self._pending = transfer
        logger.info(
            "transferring the caller",
            extra=self._log_fields(from_member=from_member, to_member=to, reason=reason),
        )
        return agent, ToolResult(f"Transferred the caller to {to}.", reply_required=False)

    def _entered(self, agent: SquadMemberAgent) -> None:
        key = agent.effective.key
        self._current = key
        arrival = agent.arrival
        if arrival is None:
            return
        if self._pending is arrival:
            self._pending = None
        record = Handoff(
            from_member=arrival.from_member, to_member=key, reason=arrival.reason, at=time.time()
        )
        self.handoffs.append(record)
        logger.info(
            "caller transferred",
            extra=self._log_fields(
                from_member=record.from_member,
                to_member=record.to_member,
                reason=record.reason,
                handoffs=len(self.handoffs),
            ),
        )

    def _opener(self, arrival: _Transfer) -> str:
        because = (
            f" because: {arrival.reason}"
            if arrival.reason and self.squad.context_policy != "none"
            else ""
        )
        return HANDOFF_OPENER.format(from_member=arrival.from_member, because=because)
