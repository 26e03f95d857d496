"""End to end through the public API: a customer's POST, the worker does the rest, GET shows it.

Real pieces: convoi-api (uvicorn, SQLite), livekit-server, a ``convoi-worker start`` reporting its
signed events to convoi-api, the emulated providers and the simulated caller (the browser).
Outbound phone calls through the API run over the real SIP bridge in ``tests/test_e2e_sip.py``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from convoi.controlplane import ControlPlaneSettings
from convoi.devstack.caller import CallerScript, run_caller
from convoi.devstack.controlplane_harness import ControlPlaneServer
from convoi.devstack.harness import EmulatorsProcess, ReceiverProcess, WorkerProcess
from convoi.devstack.livekit_server import LiveKitServer
from tests.conftest import worker_env
from tests.helpers import SUPPORT

pytestmark = pytest.mark.e2e

SCENARIO = Path(__file__).parent / "scenarios" / "e2e_web.yaml"
AGENT_NAME = "convoi-e2e-api"
SECRET = "e2e-controlplane-events-secret-0123"


@pytest.fixture(scope="module")
def api_stack(
    livekit_server: LiveKitServer,
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
    artifacts_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ControlPlaneServer, str]]:
    """convoi-api plus a worker that reports to it; yields the server and an sk_live key."""
    work = tmp_path_factory.mktemp("controlplane")
    settings = ControlPlaneSettings(
        CONVOI_DATABASE_URL=f"sqlite:///{work}/controlplane.sqlite3",
        CONVOI_EVENTS_SECRET=SECRET,
        CONVOI_AGENT_NAME=AGENT_NAME,
        LIVEKIT_URL=livekit_server.url,
        LIVEKIT_API_KEY=livekit_server.api_key,
        LIVEKIT_API_SECRET=livekit_server.api_secret,
    )
    server = ControlPlaneServer(settings).start()
    env = {
        **worker_env(livekit_server, emulators, receiver, work / "outbox.sqlite3"),
        **server.worker_env(),
    }
    worker = WorkerProcess(
        artifacts_dir / "worker-api.log", env, agent_name=AGENT_NAME
    ).start_and_wait()
    try:
        yield server, server.create_key("acct_e2e", "sk_live")
    finally:
        worker.stop()
        server.stop()


def post_call(
    server: ControlPlaneServer, key: str, body: dict[str, Any], idempotency_key: str | None = None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    return httpx.post(f"{server.url}/api/v1/public/calls", json=body, headers=headers, timeout=60)


def wait_for_terminal(
    server: ControlPlaneServer, key: str, call_id: str, timeout: float = 120.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        call = httpx.get(
            f"{server.url}/api/v1/public/calls/{call_id}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        ).json()
        if call["status"] in ("completed", "busy", "no_answer", "failed", "canceled"):
            return call
        assert time.monotonic() < deadline, (
            f"call {call_id} still {call['status']} after {timeout:.0f}s"
        )
        time.sleep(0.2)  # polling the public API, as a customer would


async def test_web_call_through_the_api_ends_completed_with_duration_and_cost(
    api_stack: tuple[ControlPlaneServer, str], emulators: EmulatorsProcess
) -> None:
    server, key = api_stack
    emulators.load_scenario(SCENARIO)
    body = {
        "type": "web",
        "agent_id": SUPPORT,
        "participant_name": "Dana",
        "metadata": {"source": "e2e"},
    }
    idem = str(uuid.uuid4())
    created = post_call(server, key, body, idem)
    assert created.status_code == 201, created.text
    call = created.json()
    assert (call["status"], call["type"], call["agent_id"]) == ("initiated", "web", SUPPORT)

    replay = post_call(server, key, body, idem)  # a client retry: same call, no second room
    assert replay.status_code == 201 and replay.json()["id"] == call["id"]

    livekit = call["livekit"]
    report = await run_caller(
        livekit["url"],
        livekit["token"],
        CallerScript(
            utterances=["Hi, I have a question about my bill.", "Thanks, that's all."],
            max_wait_s=90,
        ),
    )
    assert report.ok, report.errors
    final = await asyncio.to_thread(wait_for_terminal, server, key, call["id"])
    assert (final["status"], final["ended_reason"]) == ("completed", "customer_hangup")
    assert final["duration_seconds"] > 5
    assert final["cost"]["amount"] > 0 and final["cost"]["currency"] == "USD"
    assert final["metadata"] == {"source": "e2e"}
