"""End to end: a web caller who vanishes is billed until they left, not until the server noticed.

Real livekit-server, ``convoi-worker start``, the emulators and the reference receiver; the caller
is the scripted caller (``python -m convoi.devstack.caller``) in its own process. After the
agent's first reply it gets SIGKILL (what a crashed browser or a lost network looks like: no
leave, the sockets die). livekit-server notices about 20 s later (``CONNECTION_TIMEOUT``); the
call ends ``completed`` / ``customer_hangup`` with its duration ending at the kill.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

import pytest

from convoi.devstack.caller import caller_token
from convoi.devstack.harness import EmulatorsProcess, ReceiverProcess, WorkerProcess, dispatch_call
from convoi.devstack.livekit_server import LiveKitServer
from tests.helpers import SUPPORT

pytestmark = pytest.mark.e2e

SCENARIO = Path(__file__).parent / "scenarios" / "e2e_web.yaml"
PRECISION = 2.0
"""How far the billed end may be from the kill: one stats sample (1 s) plus slack."""


async def _caller_process(server: LiveKitServer, room: str) -> asyncio.subprocess.Process:
    token = caller_token(server.api_key, server.api_secret, room, "vanishing-caller")
    return await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "convoi.devstack.caller", "--url", server.url, "--token", token),
        *("--say", "Hi, I have a question about my bill.", "--stay", "--max-wait", "120"),
        stdout=asyncio.subprocess.PIPE,
        env=os.environ.copy(),
    )


async def _wait_for_line(proc: asyncio.subprocess.Process, text: str, timeout: float) -> None:
    stdout = proc.stdout
    assert stdout is not None
    seen: list[str] = []

    async def read() -> None:
        while True:
            line = await stdout.readline()
            assert line, f"the caller exited before {text!r}: {seen}"
            seen.append(line.decode(errors="replace").strip())
            if text in seen[-1]:
                return

    await asyncio.wait_for(read(), timeout)


async def test_a_vanished_web_caller_is_billed_until_they_left(
    livekit_server: LiveKitServer,
    worker: WorkerProcess,
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
) -> None:
    emulators.load_scenario(SCENARIO)
    call_id = f"call_{uuid.uuid4().hex[:16]}"
    room = f"e2e-vanish-{uuid.uuid4().hex[:8]}"
    spec = {"call_id": call_id, "type": "web", "agent_id": SUPPORT, "participant_name": "Dana"}
    await dispatch_call(
        livekit_server.url,
        livekit_server.api_key,
        livekit_server.api_secret,
        agent_name=worker.agent_name,
        room=room,
        metadata=spec,
    )
    caller = await _caller_process(livekit_server, room)
    try:
        await _wait_for_line(caller, "reply 1 ended", 120)  # mid-conversation
        caller.kill()
        killed_at = time.time()
        await caller.wait()
    finally:
        if caller.returncode is None:
            caller.kill()

    ended = (await asyncio.to_thread(receiver.wait_for_event, call_id, "call.ended", 120.0))[
        "event"
    ]
    events = [e["event"] for e in receiver.events(call_id)]
    [active] = [e for e in events if e["type"] == "call.status" and e["status"] == "active"]
    assert (ended["status"], ended["ended_reason"]) == ("completed", "customer_hangup")
    there = killed_at - active["created_at"]
    assert abs(ended["duration_seconds"] - there) <= PRECISION, (ended["duration_seconds"], there)
    noticed = ended["created_at"] - killed_at
    print(f"billed {ended['duration_seconds']:.3f} s, there {there:.3f} s, noticed {noticed:.1f} s")
    assert noticed > PRECISION + 5, noticed  # the server noticed later: the end is not its notice
    [lost] = worker.find("caller's connection was lost", call_id=call_id)
    assert lost["disconnect_reason"] in ("CONNECTION_TIMEOUT", "SIGNAL_CLOSE", "MEDIA_FAILURE")
    assert lost["silent_seconds"] >= noticed - PRECISION - 1
