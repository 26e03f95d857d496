"""End to end: a call whose job process is killed does not stay active.

Real livekit-server, ``convoi-worker start``, the emulators, the scripted web caller and the
reference receiver. The job process running the call gets SIGKILL mid-call (nothing in it runs any
more); the caller is still in the room, so the worker's main process dispatches the call again
(:mod:`convoi.worker.resume`), up to ``CONVOI_MAX_RESUMES`` (2) times; the job conducting the last
resume is killed too, and then the main process ends the call ``failed`` / ``worker_error`` and
deletes the room.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path

import pytest
from livekit import api

from convoi.devstack.caller import CallerScript
from convoi.devstack.harness import EmulatorsProcess, ReceiverProcess, WorkerProcess, place_call
from convoi.devstack.livekit_server import LiveKitServer
from tests.helpers import SUPPORT

pytestmark = pytest.mark.e2e

SCENARIO = Path(__file__).parent / "scenarios" / "e2e_web.yaml"


async def test_a_killed_job_process_ends_its_call_failed_worker_error(
    livekit_server: LiveKitServer,
    worker: WorkerProcess,
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
) -> None:
    emulators.load_scenario(SCENARIO)
    call_id = f"call_{uuid.uuid4().hex[:16]}"
    spec = {"call_id": call_id, "type": "web", "agent_id": SUPPORT, "participant_name": "Dana"}
    caller = asyncio.create_task(
        place_call(
            livekit_server.url,
            livekit_server.api_key,
            livekit_server.api_secret,
            agent_name=worker.agent_name,
            spec=spec,
            script=CallerScript(
                utterances=[], hang_up_after=False, wait_for_room_close=True, max_wait_s=180
            ),
            name="Dana",
            room_prefix="e2e-crash",
        )
    )
    await asyncio.to_thread(receiver.wait_for_event, call_id, "call.progress")
    accepted = await asyncio.to_thread(worker.wait_for_record, "call accepted", call_id=call_id)
    pids = [int(accepted["pid"])]
    for attempt in (1, 2):  # resumed twice (the caller is still there), then no more
        os.kill(pids[-1], signal.SIGKILL)  # the job process, not the worker
        resumed = await asyncio.to_thread(
            worker.wait_for_record, "call resumed", call_id=call_id, attempt=attempt
        )
        pids.append(int(resumed["pid"]))
    assert len(set(pids)) == 3  # three job processes conducted the call in turn
    os.kill(pids[-1], signal.SIGKILL)

    ended = (await asyncio.to_thread(receiver.wait_for_event, call_id, "call.ended", 60.0))["event"]
    assert (ended["status"], ended["ended_reason"], ended["fault"]) == (
        "failed",
        "worker_error",
        "platform",
    )
    assert "job process running the call died" in ended["detail"]
    assert ended["duration_seconds"] > 0  # it was live until it died
    report = await asyncio.wait_for(caller, 60)  # the room was deleted: the caller is out
    assert any(
        e.kind == "warning" and "room disconnected by the server" in e.message
        for e in report.events
    ), [e.message for e in report.events]
    async with api.LiveKitAPI(
        livekit_server.http_url, livekit_server.api_key, livekit_server.api_secret
    ) as lk:
        rooms = await lk.room.list_rooms(api.ListRoomsRequest(names=[report.room or ""]))
    assert list(rooms.rooms) == []
    # the worker is still serving: its main process survived and the pool has a fresh process
    assert worker.running()
