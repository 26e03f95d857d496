"""The stock livekit-agents web agent that ``convoi.devstack.bench`` compares convoi's worker with.

    python -m convoi.devstack.bench.stock_agent start   # started by the benchmark, not by hand

Written the way LiveKit's docs write the minimal voice agent: an ``AgentServer`` whose setup
function prewarms silero VAD, an ``rtc_session`` entrypoint that builds an ``AgentSession`` (VAD,
STT, LLM, TTS), starts it in the job's room with an ``Agent`` holding the instructions, and speaks
the greeting (``session.say`` of the same greeting text convoi resolves for the call). Turn
detection: the session's default. In livekit-agents 1.8.9 that is not plain VAD: ``AgentSession``
defaults ``turn_detection`` to ``inference.TurnDetector()``, which off LiveKit Cloud resolves to the
``turn-detector-v1-mini`` model, run locally (its weights, ~244 MB RSS, preloaded under
``forkserver``), with the streaming endpointing defaults (min 0.3 s, max 2.5 s): a turn the
model finds unfinished ("Can you tell me") is held up to the maximum delay. convoi's worker decides
the end of a turn on VAD silence plus the minimum endpointing delay (``turn_detection="vad"``), so
the two differ there; the pausing caller set measures what that does to false cut-ins.

Only the plugins are convoi's, built by :func:`convoi.pipeline.build_pipeline` from the agent's
definition in ``CONVOI_CONFIG_DIR`` (pointed at the emulators through the same variables), so the
two workers differ in what they do around the call, not in the providers. The dispatch metadata is
``{"agent_id", "greeting"}``. Per-turn timing goes through :func:`convoi.worker.turn_timing.attach`,
the code path convoi's worker uses. Warm pool: ``CONVOI_NUM_IDLE_PROCESSES`` (default 1), load
threshold off, like the benchmark's convoi worker.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

from livekit.agents import Agent, AgentServer, AgentSession, JobContext, JobProcess, cli
from livekit.plugins import silero

from convoi.definitions.loader import load_definitions
from convoi.pipeline import build_pipeline
from convoi.settings import WorkerSettings
from convoi.worker.turn_timing import attach

__all__ = ["main"]


def _prewarm(proc: JobProcess) -> None:
    proc.userdata["vad"] = silero.VAD.load()
    # convoi's definitions stand in for the docs' constants: read once, not on the call path
    config = os.environ.get("CONVOI_CONFIG_DIR", "agents_config")
    proc.userdata["agents"] = load_definitions(config).definitions.agents


async def _entrypoint(ctx: JobContext) -> None:
    info: dict[str, Any] = json.loads(ctx.job.metadata)
    agent = ctx.proc.userdata["agents"][info["agent_id"]]
    pipeline = build_pipeline(agent, WorkerSettings())
    session: AgentSession[None] = AgentSession(
        vad=ctx.proc.userdata["vad"], stt=pipeline.stt, llm=pipeline.llm, tts=pipeline.tts
    )
    attach(session)
    await session.start(agent=Agent(instructions=agent.system_prompt), room=ctx.room)
    session.say(str(info["greeting"]))


def main() -> None:
    """Run the stock worker (``start``) registered as ``CONVOI_AGENT_NAME``."""
    server = AgentServer(
        setup_fnc=_prewarm,
        num_idle_processes=int(os.environ.get("CONVOI_NUM_IDLE_PROCESSES", "1")),
        load_threshold=math.inf,
        load_fnc=lambda: 0.0,
        port=0,
    )
    server.rtc_session(_entrypoint, agent_name=os.environ["CONVOI_AGENT_NAME"])
    cli.run_app(server)


if __name__ == "__main__":
    main()
    sys.exit(0)
