"""End to end: malformed dispatch metadata never crashes the worker.

Fifty malformed CallSpecs (broken JSON, wrong types, unknown ids, bad overrides, binary noise,
nothing at all) are dispatched through the real livekit-server to the running worker. Every job
ends ``failed`` / ``invalid_request``: reported (with the field at fault) when it carries a valid
call id, logged when it does not; no job process dies, and the worker keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime
from typing import Any

import pytest

from convoi.devstack.harness import ReceiverProcess, WorkerProcess, dispatch_call
from convoi.devstack.livekit_server import LiveKitServer
from tests.helpers import SALES, SUPPORT, US_LINE

pytestmark = pytest.mark.e2e


def _call_id() -> str:
    return f"call_{uuid.uuid4().hex[:16]}"


def malformed() -> list[tuple[str, str | None]]:
    """(metadata, its call id when it has a valid one)."""
    anonymous = [
        "",
        "   ",
        "{",
        "null",
        "[]",
        '"call"',
        "42",
        "{'call_id': 'single quotes'}",
        "\x00\x01\x02binary",
        "{" * 500,
        json.dumps({"type": "web", "agent_id": SUPPORT}),  # no call_id
        json.dumps({"call_id": "not-a-call-id", "type": "web", "agent_id": SUPPORT}),
        json.dumps({"call_id": 17, "type": "web"}),
        json.dumps({"call_id": None}),
        json.dumps([{"call_id": _call_id()}]),
        "x" * 30_000,
    ]
    bodies: list[dict[str, Any]] = [
        {"type": "web"},
        {"type": "telepathy", "agent_id": SUPPORT},
        {"type": "web", "agent_id": "agt_00000000000000000000000000000000"},
        {"type": "web", "agent_id": "not-an-agent"},
        {"type": "web", "agent_id": SUPPORT, "participant_name": "x" * 300},
        {"type": "web", "agent_id": SUPPORT, "participant_name": 12},
        {"type": "web", "agent_id": SUPPORT, "unknown_field": True},
        {"type": "web", "agent_id": SUPPORT, "metadata": "not an object"},
        {"type": "web", "agent_id": SUPPORT, "agent_overrides": "nope"},
        {"type": "web", "agent_id": SUPPORT, "agent_overrides": {"voice": "rachel"}},
        {"type": "web", "agent_id": SUPPORT, "agent_overrides": {"first_message": "Hi {nom}"}},
        {"type": "web", "agent_id": SUPPORT, "agent_overrides": {"tts": {"voice": "nobody"}}},
        {"type": "web", "agent_id": SUPPORT, "agent_overrides": {"llm": {"temperature": "hot"}}},
        {"type": "web", "agent_id": SUPPORT, "agent_overrides": {"llm": {"provider": "acme"}}},
        {"type": "web", "agent_id": SUPPORT, "agent_overrides": {"system_prompt": ""}},
        {"type": "web", "agent_id": SUPPORT, "agent_overrides": {"knowledge_base_ids": ["kb_x"]}},
        {
            "type": "web",
            "agent_id": SUPPORT,
            "agent_overrides": {"limits": {"max_duration_seconds": 1}},
        },
        {"type": "web", "agent_id": SUPPORT, "agent_overrides": {"limits": {"silence_prompt": ""}}},
        {
            "type": "web",
            "agent_id": SUPPORT,
            "agent_overrides": {"limits": {"wrap_up_seconds": 9999}},
        },
        {"type": "web", "agent_id": SUPPORT, "agent_overrides": {"limits": []}},
        {"type": "web", "squad_id": "sqd_3fa85f6457174562b3fc2c963f66afa6"},
        {"type": "web", "agent_id": SUPPORT, "squad_id": "sqd_3fa85f6457174562b3fc2c963f66afa6"},
        {"type": "outbound_phone", "agent_id": SALES},
        {"type": "outbound_phone", "agent_id": SALES, "customer": {"number": "555-1234"}},
        {"type": "outbound_phone", "agent_id": SALES, "customer": {"number": "+15550000007"}},
        {
            "type": "outbound_phone",
            "agent_id": SALES,
            "customer": {"number": "+15550000007"},
            "phone_number_id": "phn_00000000000000000000000000000000",
        },
        {
            "type": "outbound_phone",
            "agent_id": SALES,
            "customer": {"number": "+15550000007", "name": ["Ahmed"]},
            "phone_number_id": US_LINE,
        },
        {"type": "outbound_phone", "customer": "+15550000007", "phone_number_id": US_LINE},
        {"type": "web", "agent_id": SUPPORT, "metadata": {"deep": [[[[[[[[[[1]]]]]]]]]]}, "x": 1},
        {"type": None, "agent_id": None},
        {"type": "web", "agent_id": SUPPORT, "participant_name": "\ud800"},
        {"type": "web", "agent_id": [SUPPORT]},
        {"type": "web", "agent_id": SUPPORT, "agent_overrides": {"stt": {"model": 3}}},
        {"type": "web", "agent_id": SUPPORT, "agent_overrides": {"tts": []}},
    ]
    with_ids = []
    for body in bodies:
        call_id = _call_id()
        with_ids.append((json.dumps({"call_id": call_id, **body}), call_id))
    return [(m, None) for m in anonymous] + with_ids


async def test_fifty_malformed_dispatches_end_invalid_request_and_nothing_crashes(
    livekit_server: LiveKitServer, worker: WorkerProcess, receiver: ReceiverProcess
) -> None:
    cases = malformed()
    assert len(cases) >= 50
    started = datetime.now().astimezone()
    rooms: list[tuple[str, str | None]] = []
    for batch in range(0, len(cases), 10):  # a few at a time: each job is a process
        dispatched = []
        for metadata, call_id in cases[batch : batch + 10]:
            room = f"e2e-bad-{uuid.uuid4().hex[:8]}"
            dispatched.append(
                dispatch_call(
                    livekit_server.url,
                    livekit_server.api_key,
                    livekit_server.api_secret,
                    agent_name=worker.agent_name,
                    room=room,
                    metadata=metadata,
                )
            )
            rooms.append((room, call_id))
        await asyncio.gather(*dispatched)
        for room, call_id in rooms[batch : batch + 10]:  # every job ended, reported or not
            last = "call ended" if call_id else "cannot report this call"
            await asyncio.to_thread(worker.wait_for_record, last, 180.0, room=room)

    for room, call_id in rooms:
        (rejected,) = worker.find("call rejected", room=room)
        assert (rejected["status"], rejected["reason"]) == ("failed", "invalid_request")
        assert rejected["field"], rejected  # the field at fault, in the log too
        if call_id is None:
            continue
        (ended,) = worker.find("call ended", room=room)
        assert (ended["status"], ended["reason"]) == ("failed", "invalid_request"), ended
        event = (await asyncio.to_thread(receiver.wait_for_event, call_id, "call.ended", 60.0))[
            "event"
        ]
        assert (event["status"], event["ended_reason"], event["fault"]) == (
            "failed",
            "invalid_request",
            "config",
        )
        assert event["detail"], event  # names the field at fault

    crashed = [
        r
        for r in worker.find("process exited with non-zero exit code")
        if datetime.fromisoformat(r["timestamp"]) >= started
    ]
    assert crashed == []
    assert worker.running()
