"""The stock livekit-agents outbound caller that ``convoi.devstack.bench_sip`` compares with.

    python -m convoi.devstack.bench_sip_stock start   # started by bench_sip, not by hand

Written the way livekit's outbound-call example is: connect, start the ``AgentSession`` for the
phone's identity in the background, ``CreateSIPParticipant`` with ``wait_until_answered``, then
``session.say(greeting)`` once the session runs: the greeting is synthesised after the answer.
Nothing of convoi's call handling runs here (no CallSpec, reporting, pre-rendered greeting or
squads); only the plugins are the same, built by :func:`convoi.pipeline.build_pipeline` from the
agent's definition in ``CONVOI_CONFIG_DIR`` (pointing at the emulators through the same
variables), so the two workers differ in what they do around the call, not in the providers.

The dispatch metadata is a small JSON object (``call_id``, ``agent_id``, ``to``, ``from``,
``trunk_address``, ``greeting``). The entrypoint appends ``{"call_id", "event", "at", "pid"}`` lines to
the file named by ``CONVOI_BENCH_STOCK_EVENTS``: ``dialing`` right before the request, ``answered``
when it returned, ``ended`` when the phone left the room.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Final

from livekit import api, rtc
from livekit.agents import Agent, AgentServer, AgentSession, JobContext, JobProcess, cli, room_io
from livekit.plugins import silero
from livekit.protocol.sip import SIPOutboundConfig, SIPTransport

from convoi.definitions.loader import load_definitions
from convoi.pipeline import build_pipeline
from convoi.settings import WorkerSettings

__all__ = ["EVENTS_ENV", "main"]

EVENTS_ENV: Final = "CONVOI_BENCH_STOCK_EVENTS"


def _note(call_id: str, event: str) -> None:
    with Path(os.environ[EVENTS_ENV]).open("a", encoding="utf-8") as f:
        f.write(
            json.dumps({"call_id": call_id, "event": event, "at": time.time(), "pid": os.getpid()})
            + "\n"
        )


def _prewarm(proc: JobProcess) -> None:
    proc.userdata["vad"] = silero.VAD.load()


async def _entrypoint(ctx: JobContext) -> None:
    info: dict[str, Any] = json.loads(ctx.job.metadata)
    call_id = str(info["call_id"])
    identity = "phone-" + re.sub(r"\D", "", str(info["to"]))
    await ctx.connect()
    definitions = load_definitions(os.environ.get("CONVOI_CONFIG_DIR", "agents_config"))
    agent = definitions.definitions.agents[info["agent_id"]]
    pipeline = build_pipeline(agent, WorkerSettings())
    session: AgentSession[None] = AgentSession(
        vad=ctx.proc.userdata["vad"], stt=pipeline.stt, llm=pipeline.llm, tts=pipeline.tts
    )
    gone = asyncio.Event()

    def on_left(participant: rtc.RemoteParticipant) -> None:
        if participant.identity == identity:
            gone.set()

    ctx.room.on("participant_disconnected", on_left)
    started = asyncio.create_task(
        session.start(
            agent=Agent(instructions=agent.system_prompt),
            room=ctx.room,
            room_options=room_io.RoomOptions(participant_identity=identity),
        )
    )
    sip = ctx.api.sip  # the job's API client is created on first use (not part of the request)
    _note(call_id, "dialing")
    await sip.create_sip_participant(
        api.CreateSIPParticipantRequest(
            trunk=SIPOutboundConfig(
                hostname=str(info["trunk_address"]), transport=SIPTransport.SIP_TRANSPORT_UDP
            ),
            sip_call_to=str(info["to"]),
            sip_number=str(info["from"]),
            room_name=ctx.room.name,
            participant_identity=identity,
            wait_until_answered=True,
            play_dialtone=False,
        )
    )
    _note(call_id, "answered")
    await started
    session.say(str(info["greeting"]))
    await gone.wait()
    _note(call_id, "ended")
    ctx.shutdown(reason="phone left")


def main() -> None:
    """Run the stock worker (``start``) registered as ``CONVOI_AGENT_NAME``."""
    server = AgentServer(
        setup_fnc=_prewarm,
        num_idle_processes=1,
        load_threshold=math.inf,
        load_fnc=lambda: 0.0,
        port=0,
    )
    server.rtc_session(_entrypoint, agent_name=os.environ["CONVOI_AGENT_NAME"])
    cli.run_app(server)


if __name__ == "__main__":
    main()
    sys.exit(0)
