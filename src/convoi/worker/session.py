"""Building the AgentSession for a resolved call (pure construction, no room I/O)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from livekit.agents import AgentSession, vad

from convoi.agent import CallControls, ConvoiAgent, DetachedControls
from convoi.callspec import ResolvedCall
from convoi.definitions.models import Agent
from convoi.pipeline.factory import (  # imports the plugins (main thread)
    Pipeline,
    build_pipeline,
    session_connect_options,
)
from convoi.settings import WorkerSettings
from convoi.squads import SquadRuntime

__all__ = ["BuiltSession", "PipelineFactory", "build_session"]

PipelineFactory = Callable[[Agent, WorkerSettings], Pipeline]
"""Effective agent → plugins. The worker uses :func:`convoi.pipeline.build_pipeline`; tests pass
scripted fakes through the same seam."""


class BuiltSession(NamedTuple):
    """A call's session, the agent that answers first and, for squad calls, the squad runtime."""

    session: AgentSession[CallControls]
    agent: ConvoiAgent
    squad: SquadRuntime | None


def build_session(
    call: ResolvedCall,
    settings: WorkerSettings,
    *,
    vad: vad.VAD | None,
    controls: CallControls | None = None,
    pipeline_factory: PipelineFactory = build_pipeline,
) -> BuiltSession:
    """The session (VAD, turn handling, the call's controls as userdata) and its first agent.

    Each agent carries its own STT, LLM and TTS, so squad members can differ. A squad call
    starts with its start member, built by a :class:`~convoi.squads.SquadRuntime` (handoffs,
    current member). ``controls`` is the call that owns the session; without one (text-mode
    tests) a :class:`~convoi.agent.DetachedControls` records what the agents ask. With
    ``vad=None`` turn detection is off; otherwise turns end on the local silero VAD. Neither
    turn detection nor interruption handling contacts a cloud model.
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
    detached: DetachedControls | None = None
    userdata: CallControls
    if controls is None:
        userdata = detached = DetachedControls()
    else:
        userdata = controls
    session: AgentSession[CallControls] = AgentSession(
        vad=vad,
        turn_handling={
            "turn_detection": "vad" if vad is not None else None,
            # "adaptive" interruption detection calls LiveKit Cloud; plain VAD runs locally
            "interruption": {"mode": "vad"},
            "preemptive_generation": {"enabled": True, "preemptive_tts": settings.preemptive_tts},
        },
        userdata=userdata,
        conn_options=session_connect_options(),  # bounded retries: see convoi.pipeline.factory
        # the caller's silence (neither side speaking, no tool running): see worker/limits.py
        user_away_timeout=float(call.start_agent.agent.limits.silence_timeout_seconds),
    )
    if detached is not None:
        detached.session = session
    return BuiltSession(session, agent, squad)
