"""The calls dashboard in a real browser, watching a real web call.

Real pieces, as in tests/test_e2e_browser.py: convoi-api (uvicorn, SQLite, the real LiveKit
gateway) serving ``/dashboard`` and ``/demo`` (bundled from ``web/`` by ``scripts/build-web``
into this module's own directory), livekit-server, ``convoi-worker start``, the provider
emulators, a customer webhook endpoint (tests/webhook_receiver.py) and Debian's Chromium driven
by playwright-core (``web/e2e/dashboard-call.mjs``) with a fake microphone.

The dashboard signs in with a secret key (a bad key is refused first) and lists calls; a second
tab places a web call from the demo page with a publishable key. The list shows the call
``active`` while it runs and ``completed`` after the hang-up, without a reload (hidden during the
conversation, the dashboard does not poll; visible again, it catches up); the call's page
shows the transcript lines said (speaker and squad member), the cost charts and the latency
chart as SVG marks carrying the API's numbers, and the webhook deliveries. Screenshots:
``artifacts/dashboard-list.png``, ``artifacts/dashboard-call.png``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from convoi.controlplane import ControlPlaneSettings
from convoi.controlplane.web import WEB_DIR_ENV, install_dashboard_page
from convoi.devstack.controlplane_fakes import FakeLiveKitGateway, signed_event
from convoi.devstack.controlplane_harness import ControlPlaneServer
from convoi.devstack.harness import EmulatorsProcess, ReceiverProcess, WorkerProcess
from convoi.devstack.livekit_server import LiveKitServer
from tests.conftest import worker_env
from tests.fixtures.seed_examples import OUTBOUND_FULL, WEB_MINIMAL
from tests.helpers import SUPPORT
from tests.test_controlplane_api import make_settings
from tests.test_e2e_browser import (
    CALLER_LINE,
    GREETING,
    NAME,
    REPLY,
    SCENARIO,
    STEP_TIMEOUT_MS,
    chromium_path,
    get_call,
    stop_browser,
    write_caller_wav,
)
from tests.webhook_receiver import WebhookReceiver

__all__ = ["chromium_path"]  # the module fixture, shared with tests/test_e2e_browser.py

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
DRIVER = ROOT / "web" / "e2e" / "dashboard-call.mjs"
VIEWS_DRIVER = ROOT / "web" / "e2e" / "dashboard-views.mjs"
AGENT_NAME = "convoi-e2e-dashboard"
SECRET = "e2e-dashboard-events-secret-0123456789"
ACCOUNT = "acct_dashboard"
DRIVER_TIMEOUT_S = 480.0


@pytest.fixture(scope="module")
def dashboard_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both pages, built into this module's own directory (never the shared .cache/web/demo)."""
    assert shutil.which("node"), "Node.js >= 20 is needed to build the pages and drive the browser"
    out = tmp_path_factory.mktemp("web") / "bundle"
    proc = subprocess.run(
        [str(ROOT / "scripts" / "build-web")],
        stdout=subprocess.PIPE,
        text=True,
        timeout=900,
        check=False,
        env={**os.environ, WEB_DIR_ENV: str(out)},
    )
    assert proc.returncode == 0, "scripts/build-web failed (see the output above)"
    assert Path(proc.stdout.strip().splitlines()[-1]) == out
    for name in ("dashboard.html", "dashboard.js", "dashboard.css", "index.html", "demo.js"):
        assert (out / name).is_file(), name
    return out


@pytest.fixture(scope="module")
def dashboard_stack(
    livekit_server: LiveKitServer,
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
    artifacts_dir: Path,
    dashboard_bundle: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ControlPlaneServer]:
    """convoi-api serving the built pages, plus a worker that reports to it."""
    work = tmp_path_factory.mktemp("dashboard")
    settings = ControlPlaneSettings(
        CONVOI_DATABASE_URL=f"sqlite:///{work}/controlplane.sqlite3",
        CONVOI_EVENTS_SECRET=SECRET,
        CONVOI_AGENT_NAME=AGENT_NAME,
        LIVEKIT_URL=livekit_server.url,
        LIVEKIT_API_KEY=livekit_server.api_key,
        LIVEKIT_API_SECRET=livekit_server.api_secret,
        CONVOI_WEBHOOK_POLL_SECONDS=0.2,
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(WEB_DIR_ENV, str(dashboard_bundle))
        server = ControlPlaneServer(settings).start()
        env = {
            **worker_env(livekit_server, emulators, receiver, work / "outbox.sqlite3"),
            **server.worker_env(),
        }
        worker = WorkerProcess(artifacts_dir / "worker-dashboard.log", env, agent_name=AGENT_NAME)
        try:
            worker.start_and_wait()
            yield server
        finally:
            worker.stop()
            server.stop()


def run_dashboard_driver(
    config: dict[str, Any], log_path: Path, driver: Path = DRIVER
) -> list[dict[str, Any]]:
    """Run a driver (web/e2e/dashboard-call.mjs); its JSON lines (also in ``log_path``). SIGTERM on a
    timeout (playwright closes Chromium), SIGKILL of its process group last."""
    config_path = log_path.with_suffix(".json")
    config_path.write_text(json.dumps(config, indent=2))
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            ["node", str(driver), str(config_path)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=ROOT,
            start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=DRIVER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                out, _ = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                out, _ = proc.communicate()
            out += "\n" + json.dumps({"error": f"driver timed out after {DRIVER_TIMEOUT_S:.0f}s"})
        finally:
            if proc.poll() is None:  # interrupted (Ctrl-C, pytest-timeout)
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
        log.write(out)
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_the_dashboard_says_how_to_build_it_when_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(WEB_DIR_ENV, str(tmp_path / "not-built"))
    app = FastAPI()
    install_dashboard_page(app)
    client = TestClient(app)
    page = client.get("/dashboard")
    assert page.status_code == 503 and "scripts/build-web" in page.text
    assert "calls dashboard" in page.text
    (tmp_path / "not-built").mkdir()
    (tmp_path / "not-built" / "dashboard.html").write_text("<title>dashboard</title>")
    (tmp_path / "not-built" / "dashboard.js").write_text("export {};")
    assert client.get("/dashboard").text == "<title>dashboard</title>"  # no restart needed
    assert client.get("/dashboard/static/dashboard.js").status_code == 200
    assert client.get("/dashboard/static/..%2F..%2Fetc%2Fpasswd").status_code == 404
    assert "/dashboard" not in app.openapi()["paths"]


def test_the_dashboard_follows_a_call_placed_from_the_demo_page(
    dashboard_stack: ControlPlaneServer,
    emulators: EmulatorsProcess,
    chromium_path: str,
    artifacts_dir: Path,
    tmp_path: Path,
) -> None:
    server = dashboard_stack
    emulators.load_scenario(SCENARIO)
    secret_key = server.create_key(ACCOUNT, "sk_live")
    publishable_key = server.create_key(ACCOUNT, "pk_live")
    wav = tmp_path / "caller.wav"
    write_caller_wav(wav, CALLER_LINE)
    shots = {name: artifacts_dir / f"dashboard-{name}.png" for name in ("list", "call")}
    for shot in shots.values():
        shot.unlink(missing_ok=True)
    profile = tmp_path / "chromium-profile"
    config = {
        "chromium": chromium_path,
        "user_data_dir": str(profile),
        "dashboard_url": f"{server.url}/dashboard",
        "demo_url": f"{server.url}/demo",
        "secret_key": secret_key,
        "publishable_key": publishable_key,
        "agent_id": SUPPORT,
        "participant_name": NAME,
        "wav": str(wav),
        "greeting": GREETING,
        "caller_contains": CALLER_LINE,
        "reply": REPLY,
        "list_screenshot": str(shots["list"].resolve()),
        "call_screenshot": str(shots["call"].resolve()),
        "failure_screenshot": str((artifacts_dir / "dashboard-failure.png").resolve()),
        "console_log": str((artifacts_dir / "dashboard-console.log").resolve()),
        "timeout_ms": STEP_TIMEOUT_MS,
    }
    with WebhookReceiver() as hooks:
        registered = server_post(server, secret_key, "/webhooks", {"url": hooks.url})
        assert registered["url"] == hooks.url
        try:
            lines = run_dashboard_driver(config, artifacts_dir / "dashboard-call.log")
        finally:
            leftovers = stop_browser(profile)
    last = lines[-1] if lines else {"error": "the driver printed nothing"}
    assert "result" in last, (
        f"dashboard run failed: {json.dumps(last, indent=2)[:4000]}\n"
        f"see {artifacts_dir}/dashboard-call.log, dashboard-console.log, worker-dashboard.log"
    )
    assert not leftovers, f"Chromium processes outlived the driver: {leftovers}"
    result = last["result"]
    call_id = result["call_id"]
    call = get_call(server, secret_key, call_id)
    assert (call["status"], call["ended_reason"]) == ("completed", "customer_hangup")

    # sign-in: a bad key is refused plainly; the good one stays in sessionStorage, not in URLs
    assert "401" in result["bad_key_error"] and "invalid_api_key" in result["bad_key_error"]
    assert result["session_storage_keys"] == ["convoi.dashboard.key"]
    assert result["key_in_urls"] == 0 and secret_key not in result["page_url"]

    # the list: active while the call ran, then completed, on the same page (no reload)
    assert result["active_row"][0].lower() == "active" and result["active_row"][1] == call_id
    assert result["completed_row"][0].lower() == "completed"
    assert result["completed_row"][2:4] == ["web", SUPPORT]
    assert result["completed_row"][6] == f"${call['cost']['amount']:.6f}"
    assert result["no_reload"] == "same page"
    # hidden during the whole conversation (seconds: several 2 s periods), the list did not poll
    # (one request may have been in flight when it was hidden); visible again, it caught up
    assert result["list_requests_while_hidden"] <= 1, result
    assert result["list_requests"] >= 3, result

    # the call's page: the transcript said in the call, speaker and member on each line
    shown = result["detail"]
    assert (shown["status"], shown["report"], shown["error_text"]) == ("completed", "ready", "")
    spoken = [(t["role"], t["speaker"], t["member"], t["text"]) for t in shown["transcript"]]
    assert spoken == [
        ("assistant", "Agent", "agent", GREETING),
        ("user", "Caller", "", CALLER_LINE),  # the caller is no squad member
        ("assistant", "Agent", "agent", REPLY),
    ]
    assert [t["text"] for t in call["transcript"]] == [GREETING, CALLER_LINE, REPLY]

    # the charts: SVG bars carrying the API's numbers, sized by them
    components = {m["label"]: m["value"] for m in shown["cost_by_component"]}
    assert components == call["cost"]["by_component"] and components
    assert all(m["width"] > 0 for m in shown["cost_by_component"] if m["value"] > 0)
    assert {m["label"]: m["value"] for m in shown["cost_by_member"]} == call["cost"]["by_member"]
    assert call["cost"]["by_member"], call["cost"]  # the single agent's model cost
    e2e = [m for m in shown["latency"] if m["series"] == "end to end"]
    expected = [t["e2e_latency"] for t in call["latency"] if t.get("e2e_latency") is not None]
    assert expected, call["latency"]  # the reply was a turn with a measured latency
    assert [m["value"] for m in e2e] == expected
    assert all(m["height"] > 0 for m in e2e)
    assert "median end-to-end" in shown["latency_summary"]

    # the timeline: the webhook deliveries, all delivered to the endpoint
    deliveries = [i for i in shown["timeline"] if i["kind"] == "delivery"]
    assert any("call.ended" in i["text"] for i in deliveries), deliveries
    assert any("initiated → active" in i["text"] for i in deliveries), deliveries
    assert {i["delivery"] for i in deliveries} == {"delivered"}

    for shot in shots.values():
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def server_post(server: ControlPlaneServer, key: str, path: str, body: dict[str, Any]) -> Any:
    """POST to the public API; the JSON answer (asserting 201)."""
    resp = httpx.post(
        f"{server.url}/api/v1/public{path}",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert resp.status_code == 201, resp.text
    return resp.json()


def post_signed_event(server: ControlPlaneServer, call_id: str, sequence: int, status: str,
                      **fields: Any) -> None:  # fmt: skip
    """Report an event for ``call_id`` as the worker would (signed with the API's secret)."""
    body, headers = signed_event(
        server.settings.events_secret.get_secret_value(), call_id, sequence, status, **fields
    )
    resp = httpx.post(
        f"{server.url}/internal/v1/calls/{call_id}/events", content=body, headers=headers
    )
    assert resp.status_code == 201, resp.text


@pytest.fixture
def seeded_api(dashboard_bundle: Path, tmp_path: Path) -> Iterator[ControlPlaneServer]:
    """convoi-api on a fake LiveKit (no call runs) serving the built pages."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(WEB_DIR_ENV, str(dashboard_bundle))
        server = ControlPlaneServer(make_settings(tmp_path), FakeLiveKitGateway()).start()
        try:
            yield server
        finally:
            server.stop()


def test_the_dashboard_pages_filters_and_keeps_publishable_keys_to_their_view(
    seeded_api: ControlPlaneServer, chromium_path: str, artifacts_dir: Path, tmp_path: Path
) -> None:
    server = seeded_api
    secret_key = server.create_key(ACCOUNT, "sk_live")
    publishable_key = server.create_key(ACCOUNT, "pk_live")
    web: list[str] = []
    for n in range(23):  # ended as they come: the account may have 20 calls in progress
        web.append(server_post(server, secret_key, "/calls", json.loads(WEB_MINIMAL.text()))["id"])
        if n < 2:
            post_signed_event(server, web[-1], 1, "active", cost="0.001")
        else:
            post_signed_event(server, web[-1], 1, "completed", event_type="call.ended",
                              ended_reason="customer_hangup")  # fmt: skip
    phone = server_post(server, secret_key, "/calls", json.loads(OUTBOUND_FULL.text()))["id"]
    config = {
        "chromium": chromium_path,
        "user_data_dir": str(tmp_path / "chromium-profile"),
        "dashboard_url": f"{server.url}/dashboard",
        "secret_key": secret_key,
        "publishable_key": publishable_key,
        "unknown_key": "sk_live_" + "0" * 48,
        "web_call_id": web[0],
        "phone_call_id": phone,
        "pk_screenshot": str((artifacts_dir / "dashboard-pk.png").resolve()),
        "failure_screenshot": str((artifacts_dir / "dashboard-views-failure.png").resolve()),
        "console_log": str((artifacts_dir / "dashboard-views-console.log").resolve()),
        "timeout_ms": 60_000,
    }
    try:
        lines = run_dashboard_driver(config, artifacts_dir / "dashboard-views.log", VIEWS_DRIVER)
    finally:
        leftovers = stop_browser(tmp_path / "chromium-profile")
    last = lines[-1] if lines else {"error": "the driver printed nothing"}
    assert "result" in last, f"dashboard views failed: {json.dumps(last, indent=2)[:4000]}"
    assert not leftovers, leftovers
    result = last["result"]

    newest_first = [phone, *reversed(web)]
    assert [r["id"] for r in result["first_page"]] == newest_first[:20]
    assert result["load_more_shown"] is True
    assert [r["id"] for r in result["all_rows"]] == newest_first  # the cursor's second page
    assert sorted(r["id"] for r in result["active_rows"]) == sorted(web[:2])
    assert [r["id"] for r in result["phone_rows"]] == [phone]

    assert result["network_error"].startswith("Network error"), result["network_error"]
    assert "401" in result["refused_error"] and "Sign in again" in result["refused_error"]
    assert result["storage_after_refusal"] == []  # the refused key is forgotten

    assert "does not let publishable keys" in result["pk_view_text"]
    assert result["pk_detail"] == {
        "status": "active",
        "cost": "$0.001000 USD",
        "limited_shown": True,
        "full_shown": False,
    }
    assert "404" in result["pk_phone_error"] and "web calls only" in result["pk_phone_error"]
    # a publishable key only ever read single calls: never the list, never deliveries
    assert result["pk_requests"], result
    for path in result["pk_requests"]:
        assert path.startswith("/api/v1/public/calls/call_"), path
        assert not path.endswith("/events"), path
