"""Building the AgentSession for a resolved call (pure construction, no room I/O)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from livekit.agents import AgentSession

from convoi.callspec import ResolvedCall
from convoi.definitions.models import Agent
from convoi.pipeline.factory import Pipeline, build_pipeline  # imports the plugins (main thread)
from convoi.settings import WorkerSettings
from convoi.squads import SquadRuntime
from convoi.worker.agent import ConvoiAgent
from convoi.worker.state import CallState

__all__ = ["PipelineFactory", "build_session"]

PipelineFactory = Callable[[Agent, WorkerSettings], Pipeline]
"""Effective agent → plugins. The worker uses :func:`convoi.pipeline.build_pipeline`; tests pass
scripted fakes through the same seam."""


def build_session(
    call: ResolvedCall,
    settings: WorkerSettings,
    *,
    vad: Any | None,
    pipeline_factory: PipelineFactory = build_pipeline,
) -> tuple[AgentSession[CallState], ConvoiAgent]:
    """The session (VAD, turn handling, per-call state) and the agent that answers first.

    Each agent carries its own STT, LLM and TTS, so squad members can differ. A squad call
    starts with its start member, built by a :class:`~convoi.squads.SquadRuntime` kept on
    ``session.userdata.squad`` (handoffs, current member). With ``vad=None``
    (text-mode tests) turn detection is off; otherwise turns end on the local silero VAD.
    Neither turn detection nor interruption handling contacts a cloud model.
    """
    squad: SquadRuntime | None = None
    agent: ConvoiAgent
    if call.squad is not None:
        squad = SquadRuntime(call, settings, pipeline_factory)
        agent = squad.start_agent()
    else:
        start = call.start_agent
        pipeline = pipeline_factory(start.agent, settings)
        agent = ConvoiAgent(start, stt=pipeline.stt, llm=pipeline.llm, tts=pipeline.tts)
    session: AgentSession[CallState] = AgentSession(
        vad=vad,
        turn_handling={
            "turn_detection": "vad" if vad is not None else None,
            # "adaptive" interruption detection calls LiveKit Cloud; plain VAD runs locally
            "interruption": {"mode": "vad"},
        },
        userdata=CallState(call=call, squad=squad),
    )
    return session, agent
