"""Building the AgentSession for a resolved call (pure construction, no room I/O)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from livekit.agents import AgentSession, inference, vad
from livekit.agents.voice.turn import EndpointingOptions, TurnDetectionMode, TurnHandlingOptions

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

__all__ = [
    "MODEL_MAX_ENDPOINTING_DELAY",
    "MODEL_VAD_MIN_SILENCE",
    "BuiltSession",
    "PipelineFactory",
    "build_session",
    "turn_handling",
    "vad_min_silence",
]

PipelineFactory = Callable[[Agent, WorkerSettings], Pipeline]
"""Effective agent → plugins. The worker uses :func:`convoi.pipeline.build_pipeline`; tests pass
scripted fakes through the same seam."""


MODEL_MAX_ENDPOINTING_DELAY = 1.2
"""How long a turn the end-of-turn model finds unfinished is held (livekit's default: 2.5 s).
Measured with the benchmark's pausing callers (450–900 ms mid-sentence pauses): 1.2 s let as few
pauses be cut into as 2.5 s did, and answered those turns 1.3 s sooner."""
MODEL_VAD_MIN_SILENCE = 0.3
"""silero's end-of-speech silence with the end-of-turn model (silero's default: 0.55 s): the
model, not the silence, guards the caller's pauses, so the turn is decided ≈ 150 ms sooner."""


def vad_min_silence(settings: WorkerSettings) -> float | None:
    """silero's ``min_silence_duration`` for the settings (None: silero's default)."""
    if settings.vad_min_silence_seconds is not None:
        return settings.vad_min_silence_seconds
    return MODEL_VAD_MIN_SILENCE if settings.turn_detection == "model" else None


def turn_handling(settings: WorkerSettings, *, with_vad: bool) -> TurnHandlingOptions:
    """The session's turn handling: how a turn ends (``CONVOI_TURN_DETECTION``: silero's VAD
    alone, or livekit's local audio end-of-turn model as well, asked for by name so it never
    calls LiveKit Cloud; none without a VAD), the endpointing delays the settings set (else
    livekit's), interruptions by local VAD, and preemptive replies. Neither turn detection nor
    interruption handling contacts a cloud model."""
    detection: TurnDetectionMode | None = None
    if with_vad:
        detection = (
            inference.TurnDetector(version="v1-mini")
            if settings.turn_detection == "model"
            else "vad"
        )
    options: TurnHandlingOptions = {
        "turn_detection": detection,
        # "adaptive" interruption detection calls LiveKit Cloud; plain VAD runs locally
        "interruption": {"mode": "vad"},
        "preemptive_generation": {"enabled": True, "preemptive_tts": settings.preemptive_tts},
    }
    delays: EndpointingOptions = {}
    if settings.min_endpointing_delay is not None:
        delays["min_delay"] = settings.min_endpointing_delay
    if settings.max_endpointing_delay is not None:
        delays["max_delay"] = settings.max_endpointing_delay
    elif detection is not None and settings.turn_detection == "model":
        delays["max_delay"] = MODEL_MAX_ENDPOINTING_DELAY
    if delays:
        options["endpointing"] = delays
    return options


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
    ``vad=None`` turn detection is off; otherwise see :func:`turn_handling`.
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
        turn_handling=turn_handling(settings, with_vad=vad is not None),
        userdata=userdata,
        conn_options=session_connect_options(),  # bounded retries: see convoi.pipeline.factory
        # the caller's silence (neither side speaking, no tool running): see worker/limits.py
        user_away_timeout=float(call.start_agent.agent.limits.silence_timeout_seconds),
    )
    if detached is not None:
        detached.session = session
    return BuiltSession(session, agent, squad)
