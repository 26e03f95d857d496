"""End to end (issue 20): the definition travels with the call, over the real SIP bridge.

convoi-api, one worker (never restarted), livekit-server + livekit-sip, SIPp as the phone. An
agent created through the definitions API (the worker's files have never heard of it) greets the
callee; its greeting is updated through the API and the very next call greets with the new one.
A dispatch whose embedded definition is invalid ends ``failed`` / ``invalid_request``.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from convoi.devstack.harness import EmulatorsProcess, ReceiverProcess, dispatch_call
from convoi.devstack.sip_stack import SipStack
from convoi.devstack.sipp import Behaviour
from tests.helpers import SALES, US_LINE
from tests.sip_calls import SipApi, callee, phone_call, start_sip_api

pytestmark = pytest.mark.e2e

AGENT_NAME = "convoi-e2e-defs"
AGENTS = "/api/v1/public/agents"
GREETING_V1 = "Hi {name}, this is Dana from Convoi, version one."
GREETING_V2 = "Hello {name}, Dana again, this greeting is version two."


@pytest.fixture(scope="module")
def sip_api(
    sip_stack: SipStack,
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
    artifacts_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SipApi]:
    with start_sip_api(
        sip_stack,
        emulators,
        receiver,
        tmp_path_factory.mktemp("defs-api"),
        artifacts_dir / "worker-defs.log",
        agent_name=AGENT_NAME,
    ) as sip:
        yield sip


def _api(sip: SipApi, method: str, path: str, body: Any = None) -> dict[str, Any]:
    response = httpx.request(
        method,
        f"{sip.server.url}{path}",
        json=body,
        headers={"Authorization": f"Bearer {sip.key}"},
        timeout=30,
    )
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


def _versions(sip: SipApi, call_id: str) -> dict[str, int]:
    with sqlite3.connect(sip.database) as db:
        (row,) = db.execute(
            "SELECT definition_versions FROM calls WHERE id = ?", (call_id,)
        ).fetchall()
    return dict(json.loads(row[0]))


async def _greeted_with(sip: SipApi, agent_id: str, tmp_path: Path) -> tuple[dict, dict, float]:
    """Place a call to ``agent_id``; the callee answers, listens 12 s and hangs up. Returns the
    final GET, the stored call.ended event and the seconds of speech the callee heard."""
    with callee(Behaviour.answer_then_hangup(after_seconds=12.0), tmp_path) as phone:
        call = sip.create(phone_call(agent_id, US_LINE))
        phone.wait_for_answer(90)
        assert await asyncio.to_thread(phone.wait_for_hangup, 60) == "callee"
        final = await asyncio.to_thread(sip.wait_for_terminal, call["id"])
        heard = phone.recording()
    speech = sum(seg.duration_s for seg in heard.segments())
    return final, await asyncio.to_thread(sip.ended_event, call["id"]), speech


async def test_an_updated_greeting_is_used_by_the_next_call_without_a_restart(
    sip_api: SipApi, emulators: EmulatorsProcess, tmp_path: Path
) -> None:
    emulators.load_scenario({"caller": [], "default_reply": "Okay."})
    sales = _api(sip_api, "GET", f"{AGENTS}/{SALES}")
    body = {k: v for k, v in sales.items() if k not in ("id", "object", "version")}
    body = {k: v for k, v in body.items() if k not in ("created_at", "updated_at")}
    agent = _api(sip_api, "POST", AGENTS, {**body, "name": "Dana", "first_message": GREETING_V1})
    assert sip_api.worker.proc is not None
    worker_pid = sip_api.worker.proc.pid

    final, ended, speech = await _greeted_with(sip_api, agent["id"], tmp_path / "one")
    assert (final["status"], final["ended_reason"]) == ("completed", "customer_hangup")
    assert ended["transcript"][0]["role"] == "assistant"
    assert ended["transcript"][0]["text"] == GREETING_V1.format(name="Ahmed")
    assert speech > 2.0  # the callee heard it
    assert _versions(sip_api, final["id"]) == {agent["id"]: 1, US_LINE: 1}

    updated = _api(sip_api, "PATCH", f"{AGENTS}/{agent['id']}", {"first_message": GREETING_V2})
    assert updated["version"] == 2

    final, ended, speech = await _greeted_with(sip_api, agent["id"], tmp_path / "two")
    assert (final["status"], final["ended_reason"]) == ("completed", "customer_hangup")
    assert ended["transcript"][0]["text"] == GREETING_V2.format(name="Ahmed")
    assert speech > 2.0
    assert _versions(sip_api, final["id"]) == {agent["id"]: 2, US_LINE: 1}
    tts = [r["text"] for r in emulators.requests("tts") if r.get("text")]
    assert GREETING_V1.format(name="Ahmed") in tts and GREETING_V2.format(name="Ahmed") in tts
    assert sip_api.worker.proc.pid == worker_pid and sip_api.worker.running()  # no restart


async def test_a_dispatch_with_an_invalid_embedded_definition_ends_invalid_request(
    sip_api: SipApi, sip_stack: SipStack
) -> None:
    sales = _api(sip_api, "GET", f"{AGENTS}/{SALES}")
    document = {k: v for k, v in sales.items() if k not in ("object", "version")}
    document = {k: v for k, v in document.items() if k not in ("created_at", "updated_at")}
    document["tts"] = {"provider": "elevenlabs"}  # no voice_id: invalid
    room = f"e2e-defs-{uuid.uuid4().hex[:8]}"
    spec = {
        "call_id": f"call_{uuid.uuid4().hex[:16]}",
        "type": "web",
        "agent_id": SALES,
        "definition": {"versions": {SALES: 1}, "agents": [document]},
    }
    await dispatch_call(
        sip_stack.url,
        sip_stack.api_key,
        sip_stack.api_secret,
        agent_name=AGENT_NAME,
        room=room,
        metadata=spec,
    )
    ended = await asyncio.to_thread(sip_api.worker.wait_for_record, "call ended", 120.0, room=room)
    assert (ended["status"], ended["reason"]) == ("failed", "invalid_request"), ended
    (rejected,) = sip_api.worker.find("call rejected", room=room)
    assert rejected["field"] == "definition.agents[0].tts.voice_id", rejected
    assert sip_api.worker.running()
