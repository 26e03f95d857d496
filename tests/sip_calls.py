"""Shared pieces of the end-to-end tests over the real SIP bridge (``tests/test_e2e_sip*.py``,
voicemail, transfer, DTMF): convoi-api + a worker dialling through the SIP stack to SIPp.

SIPp answers on 127.0.0.1:5080 (:data:`TRUNK_PORT`), where ``agents_config/phone_numbers.yaml``
points both trunks; each test module starts its own control plane and worker
(:func:`start_sip_api`) under its own agent name.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from livekit import api

from convoi.controlplane import ControlPlaneSettings
from convoi.devstack.controlplane_harness import ControlPlaneServer
from convoi.devstack.harness import EmulatorsProcess, ReceiverProcess, WorkerProcess
from convoi.devstack.sip_stack import SipStack
from convoi.devstack.sipp import Behaviour, Recording, SippCallee
from tests.conftest import worker_env
from tests.helpers import US_LINE

TRUNK_PORT = 5080
"""Both shipped phone numbers' trunks reach ``127.0.0.1:5080``: SIPp answers there."""
MEDIA_PORT = 16020
CUSTOMER = "+15550000007"
PHONE_IDENTITY = "phone-" + CUSTOMER.lstrip("+")
"""The callee's participant identity in the call's room."""

TERMINAL = ("completed", "busy", "no_answer", "failed", "canceled")


@dataclass
class SipApi:
    """convoi-api + a worker dialling over the SIP stack."""

    server: ControlPlaneServer
    key: str
    database: Path
    stack: SipStack
    worker: WorkerProcess

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        resp = httpx.post(
            f"{self.server.url}/api/v1/public/calls",
            json=body,
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=60,
        )
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    def get(self, call_id: str) -> dict[str, Any]:
        resp = httpx.get(
            f"{self.server.url}/api/v1/public/calls/{call_id}",
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=30,
        )
        resp.raise_for_status()
        return dict(resp.json())

    def wait_for_terminal(self, call_id: str, timeout: float = 150.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (call := self.get(call_id))["status"] not in TERMINAL:
            assert time.monotonic() < deadline, f"{call_id} still {call['status']}"
            time.sleep(0.2)  # polling the public API, as a customer would
        return call

    def ended_event(self, call_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """The stored ``call.ended`` event (what the worker reported; it follows the terminal
        ``call.status`` that GET already shows)."""
        deadline = time.monotonic() + timeout
        while True:
            with sqlite3.connect(self.database) as db:
                rows = db.execute(
                    "SELECT body FROM call_events WHERE call_id = ? AND type = 'call.ended'",
                    (call_id,),
                ).fetchall()
            if rows:
                assert len(rows) == 1, rows
                return dict(json.loads(rows[0][0]))
            assert time.monotonic() < deadline, f"no call.ended stored for {call_id}"
            time.sleep(0.2)  # the control plane's database, as the events land

    async def hang_up_as_the_callee(self, room: str, identity: str = PHONE_IDENTITY) -> None:
        """The phone leg leaves the room (livekit-sip sends BYE to SIPp), as when the callee
        hangs up: the agent sees its caller go."""
        async with api.LiveKitAPI(
            self.stack.http_url, self.stack.api_key, self.stack.api_secret
        ) as lk:
            await lk.room.remove_participant(
                api.RoomParticipantIdentity(room=room, identity=identity)
            )


@contextlib.contextmanager
def start_sip_api(
    sip_stack: SipStack,
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
    work: Path,
    log: Path,
    *,
    agent_name: str,
    secret: str = "e2e-sip-events-secret-0123456789ab",
    extra_env: dict[str, str] | None = None,
    config_dir: Path | None = None,
) -> Iterator[SipApi]:
    """convoi-api (SQLite in ``work``) and a worker registered as ``agent_name`` (log: ``log``),
    both on the definitions in ``config_dir`` (default: the shipped ``agents_config/``)."""
    database = work / "controlplane.sqlite3"
    config_env = {"CONVOI_CONFIG_DIR": str(config_dir)} if config_dir is not None else {}
    settings = ControlPlaneSettings(
        **config_env,
        CONVOI_DATABASE_URL=f"sqlite:///{database}",
        CONVOI_EVENTS_SECRET=secret,
        CONVOI_AGENT_NAME=agent_name,
        LIVEKIT_URL=sip_stack.url,
        LIVEKIT_API_KEY=sip_stack.api_key,
        LIVEKIT_API_SECRET=sip_stack.api_secret,
    )
    server = ControlPlaneServer(settings).start()
    env = {
        **worker_env(sip_stack, emulators, receiver, work / "outbox.sqlite3"),  # type: ignore[arg-type]
        **sip_stack.worker_env(),
        **server.worker_env(),
        "CONVOI_TRUNK_UAE_PASSWORD": "e2e-trunk-password",  # SIPp does not challenge
        **config_env,
        **(extra_env or {}),
    }
    worker = WorkerProcess(log, env, agent_name=agent_name)
    try:
        worker.start_and_wait()
        yield SipApi(
            server, server.create_key("acct_e2e_sip", "sk_live"), database, sip_stack, worker
        )
    finally:
        worker.stop()
        server.stop()


def phone_call(agent_id: str, phone_number_id: str = US_LINE) -> dict[str, Any]:
    return {
        "type": "outbound_phone",
        "agent_id": agent_id,
        "customer": {"number": CUSTOMER, "name": "Ahmed"},
        "phone_number_id": phone_number_id,
        "metadata": {"campaign": "e2e-sip"},
    }


def callee(behaviour: Behaviour, workdir: Path, *, hold_s: float = 120.0) -> SippCallee:
    """SIPp answering on the trunks' port; answering behaviours send RTP for ``hold_s``."""
    return SippCallee(
        behaviour, workdir=workdir, sip_port=TRUNK_PORT, media_port=MEDIA_PORT, hold_s=hold_s
    )


def wait_for_speech_after(
    phone: SippCallee, at: float, timeout: float = 90.0, quiet_s: float = 1.0
) -> Recording:
    """Wait until the callee heard a stretch of speech that started after ``at`` (epoch) and has
    finished (``quiet_s`` of silence since)."""
    deadline = time.monotonic() + timeout
    while True:
        heard = phone.recording()
        started = heard.started_at
        if started is not None:
            later = [seg for seg in heard.segments() if started + seg.start_s > at]
            if later and time.time() - (started + later[-1].end_s) >= quiet_s:
                return heard
        assert time.monotonic() < deadline, f"no speech after the handoff\n{phone.summary()}"
        time.sleep(0.25)  # the capture file grows as RTP arrives; nothing to wait on but it


def stt_finals(emulators: EmulatorsProcess) -> list[str]:
    stt = emulators.requests("stt")
    return [t["transcript"] for r in stt for t in r.get("transcripts", []) if t["is_final"]]
