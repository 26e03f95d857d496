"""End to end: a web call placed through the API, ended through the API mid-sentence.

Real pieces: convoi-api (uvicorn, SQLite) with its webhook deliverer, livekit-server, a
``convoi-worker start`` reporting to convoi-api, the emulated providers, the simulated caller
(the browser) and a local webhook receiver (the customer's server). While the agent speaks its
answer, the test POSTs ``/calls/{id}/end``: the caller hears the sentence to its end, the agent
leaves, GET shows ``completed`` / ``api_hangup``, and the receiver got ``call.status`` for each
transition and ``call.ended`` (transcript, metadata), signed, checked with the documented snippet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from convoi.controlplane import ControlPlaneSettings
from convoi.devstack.caller import CallerScript, run_caller
from convoi.devstack.caller.report import CallerEvent
from convoi.devstack.controlplane_harness import ControlPlaneServer
from convoi.devstack.harness import EmulatorsProcess, ReceiverProcess, WorkerProcess
from convoi.devstack.livekit_server import LiveKitServer
from tests.conftest import worker_env
from tests.helpers import SUPPORT
from tests.test_e2e_controlplane_call import wait_for_terminal
from tests.webhook_receiver import WebhookReceiver, verify

pytestmark = pytest.mark.e2e

SCENARIO = Path(__file__).parent / "scenarios" / "e2e_api_hangup.yaml"
AGENT_NAME = "convoi-e2e-hangup"
SECRET = "e2e-hangup-events-secret-0123456789"
ANSWER = "Your balance is forty two dollars, due on the first of next month"
TERMINAL = ("completed", "busy", "no_answer", "failed", "canceled")


@pytest.fixture(scope="module")
def hooks_stack(
    livekit_server: LiveKitServer,
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
    artifacts_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ControlPlaneServer, str]]:
    """convoi-api (webhooks polled every 0.2 s) plus a worker reporting to it; an sk_live key."""
    work = tmp_path_factory.mktemp("hangup")
    settings = ControlPlaneSettings(
        CONVOI_DATABASE_URL=f"sqlite:///{work}/controlplane.sqlite3",
        CONVOI_EVENTS_SECRET=SECRET,
        CONVOI_AGENT_NAME=AGENT_NAME,
        CONVOI_WEBHOOK_POLL_SECONDS=0.2,
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
        artifacts_dir / "worker-hangup.log", env, agent_name=AGENT_NAME
    ).start_and_wait()
    try:
        yield server, server.create_key("acct_e2e_hooks", "sk_live")
    finally:
        worker.stop()
        server.stop()


def _api(server: ControlPlaneServer, key: str, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(
        method,
        f"{server.url}/api/v1/public{path}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
        **kw,
    )


async def test_ending_a_live_call_through_the_api_after_the_agents_sentence(
    hooks_stack: tuple[ControlPlaneServer, str], emulators: EmulatorsProcess
) -> None:
    server, key = hooks_stack
    emulators.load_scenario(SCENARIO)
    with WebhookReceiver() as hooks:
        endpoint = _api(server, key, "POST", "/webhooks", json={"url": hooks.url}).json()
        body = {"type": "web", "agent_id": SUPPORT, "participant_name": "Dana",
                "metadata": {"source": "e2e-hangup"}}  # fmt: skip
        created = _api(server, key, "POST", "/calls", json=body)
        assert created.status_code == 201, created.text
        call = created.json()
        loop = asyncio.get_running_loop()
        ended: dict[str, Any] = {}

        def on_event(event: CallerEvent) -> None:  # the answer started: the customer hangs up
            if event.kind == "reply_start" and "future" not in ended:
                ended["asked_at"] = time.monotonic()
                ended["future"] = loop.run_in_executor(
                    None, lambda: _api(server, key, "POST", f"/calls/{call['id']}/end")
                )

        report = await run_caller(
            call["livekit"]["url"],
            call["livekit"]["token"],
            CallerScript(
                utterances=["Hi, I have a question about my bill."],
                hang_up_after=False,  # stay until the agent leaves
                max_wait_s=90,
            ),
            on_event=on_event,
        )
        assert "future" in ended, f"the agent never answered: {report.errors}"
        response: httpx.Response = await ended["future"]
        assert response.status_code == 202, response.text
        final = await asyncio.to_thread(wait_for_terminal, server, key, call["id"])
        finished_at = time.monotonic()
        got = await asyncio.to_thread(
            hooks.wait_for, lambda r: any(x.event["type"] == "call.ended" for x in r), 120.0
        )
        webhook_at = time.monotonic()

    # the caller heard the answer to its end, then the agent left
    agent_said = " ".join(report.transcript_texts(report.agent_identity))
    assert ANSWER in agent_said, agent_said
    assert report.transcript_texts(report.agent_identity)[-1].find(ANSWER) >= 0
    assert report.turns and report.turns[0].reply_end is not None, report.errors
    # it kept speaking after the end was asked, and was over before the agent / room went away
    closed = [e.at for e in report.events if "room disconnected by the server" in e.message]
    gone = [*closed, *([report.agent_left] if report.agent_left else [])]
    assert gone, report.events
    last = report.segments[-1]
    assert last.end.mono > ended["asked_at"], "the answer was over before the end was asked"
    assert min(g.mono for g in gone) - last.end.mono > 0.2, "the hang-up cut the answer short"
    assert (final["status"], final["ended_reason"], final["fault"]) == (
        "completed", "api_hangup", None,
    )  # fmt: skip
    again = _api(server, key, "POST", f"/calls/{call['id']}/end")
    assert again.status_code == 409 and again.json()["error"]["code"] == "call_already_ended"

    # the customer's server: every transition and the end, signed, in order
    for request in got:
        assert verify(endpoint["secret"], request.headers, request.body)
    events = [r.event for r in got]
    assert [(e["type"], e["data"]["status"]) for e in events] == [
        ("call.status", "active"), ("call.status", "completed"), ("call.ended", "completed"),
    ]  # fmt: skip
    data = events[-1]["data"]
    assert (data["ended_reason"], data["metadata"]) == ("api_hangup", {"source": "e2e-hangup"})
    assert any(ANSWER in t["text"] for t in data["transcript"] if t["role"] == "assistant")
    assert data["cost"]["amount"] > 0 and data["cost"]["by_component"]
    listed = _api(server, key, "GET", f"/calls/{call['id']}/events").json()["data"]
    assert [d["status"] for d in listed] == ["delivered"] * 3
    print(
        f"\nhang-up: end asked → call terminal in GET {finished_at - ended['asked_at']:.2f} s, "
        f"→ call.ended webhook received {webhook_at - ended['asked_at']:.2f} s"
    )
