"""A real browser on a web call: headless Chromium runs the demo page served by convoi-api.

Real pieces: convoi-api (uvicorn, SQLite, the real LiveKit gateway) serving ``/demo`` (the page
bundled from ``web/`` by ``scripts/build-web``: livekit-client from npm, no CDN), livekit-server,
``convoi-worker start`` reporting to convoi-api, the provider emulators, and Debian's Chromium
driven by playwright-core (``web/e2e/browser-call.mjs``) with a fake microphone that plays an
espeak-ng WAV of the caller's line.

The page creates the call with a pk_live key, joins with the microphone off, receives the agent's
audio and shows the greeting; the driver then turns the microphone on (the WAV plays once:
silence, the words, silence), the STT emulator hears it and finalises the scripted line, the agent
replies, the page shows the reply; a screenshot is kept (``artifacts/browser-call.png``); hang-up
leaves the room and the call ends ``completed`` / ``customer_hangup``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from convoi.controlplane import ControlPlaneSettings
from convoi.controlplane.web import WEB_DIR_ENV, install_demo_page
from convoi.devstack.audio import synthesize
from convoi.devstack.controlplane_harness import ControlPlaneServer
from convoi.devstack.harness import EmulatorsProcess, ReceiverProcess, WorkerProcess
from convoi.devstack.livekit_server import LiveKitServer
from tests.conftest import worker_env
from tests.helpers import SUPPORT

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
DRIVER = ROOT / "web" / "e2e" / "browser-call.mjs"
AGENT_NAME = "convoi-e2e-browser"
SECRET = "e2e-browser-events-secret-0123456789"
NAME = "Dana"
GREETING = "Hi Dana, thanks for calling Convoi support. How can I help you today?"
CALLER_LINE = "Hi, I have a question about my bill."
REPLY = "Sure. Your balance is forty two dollars, due on the first."
SCENARIO = {
    "caller": [CALLER_LINE],
    "llm": [{"when": {"last_user_contains": "bill"}, "say": REPLY}],
    "default_reply": "Okay.",
}
WAV_RATE = 48_000
LEAD_SILENCE_S = 2.0  # getUserMedia → published → the agent subscribed and streaming to STT
TAIL_SILENCE_S = 4.0  # > the STT emulator's 400 ms endpointing, with room for a slow machine
STEP_TIMEOUT_MS = 120_000  # each wait of the driver
DRIVER_TIMEOUT_S = 480.0  # the whole browser run (under pytest's 600 s)
TERMINAL = ("completed", "busy", "no_answer", "failed", "canceled")


def run_script(*argv: str) -> subprocess.CompletedProcess[str]:
    """A repository script; its progress (stderr) is passed through to the test output."""
    return subprocess.run(
        [str(ROOT / "scripts" / argv[0]), *argv[1:]],
        stdout=subprocess.PIPE,
        text=True,
        timeout=900,
        check=False,
    )


@pytest.fixture(scope="module")
def chromium_path() -> str:
    """Debian's chromium, installed by scripts/chromium when missing (as root)."""
    proc = run_script("chromium")
    if proc.returncode == 3:  # no root, no password-less sudo: cannot install here
        pytest.skip("Debian's chromium is not installed and cannot be installed without root")
    assert proc.returncode == 0, "scripts/chromium failed (see the output above)"
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def web_bundle() -> Path:
    """The demo page bundle (scripts/build-web: npm ci + tsc + esbuild; cached)."""
    assert shutil.which("node"), "Node.js >= 20 is needed to build the page and drive the browser"
    proc = run_script("build-web")
    assert proc.returncode == 0, "scripts/build-web failed (see the output above)"
    bundle = Path(proc.stdout.strip().splitlines()[-1])
    assert (bundle / "index.html").is_file() and (bundle / "demo.js").is_file()
    return bundle


@pytest.fixture(scope="module")
def browser_stack(
    livekit_server: LiveKitServer,
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
    artifacts_dir: Path,
    web_bundle: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ControlPlaneServer]:
    """convoi-api serving the built page, plus a worker that reports to it."""
    work = tmp_path_factory.mktemp("browser")
    settings = ControlPlaneSettings(
        CONVOI_DATABASE_URL=f"sqlite:///{work}/controlplane.sqlite3",
        CONVOI_EVENTS_SECRET=SECRET,
        CONVOI_AGENT_NAME=AGENT_NAME,
        LIVEKIT_URL=livekit_server.url,
        LIVEKIT_API_KEY=livekit_server.api_key,
        LIVEKIT_API_SECRET=livekit_server.api_secret,
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(WEB_DIR_ENV, str(web_bundle))
        server = ControlPlaneServer(settings).start()
        env = {
            **worker_env(livekit_server, emulators, receiver, work / "outbox.sqlite3"),
            **server.worker_env(),
        }
        worker = WorkerProcess(artifacts_dir / "worker-browser.log", env, agent_name=AGENT_NAME)
        try:
            worker.start_and_wait()
            yield server
        finally:
            worker.stop()
            server.stop()


def write_caller_wav(path: Path, text: str) -> float:
    """Silence, ``text`` spoken by espeak-ng, silence: 16-bit mono. Returns the speech seconds."""
    speech = synthesize(text, WAV_RATE)
    lead = np.zeros(int(LEAD_SILENCE_S * WAV_RATE), dtype=np.int16)
    tail = np.zeros(int(TAIL_SILENCE_S * WAV_RATE), dtype=np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(WAV_RATE)
        w.writeframes(np.concatenate([lead, speech, tail]).astype("<i2").tobytes())
    return speech.size / WAV_RATE


def run_driver(config: dict[str, Any], log_path: Path) -> tuple[int, list[dict[str, Any]]]:
    """Run web/e2e/browser-call.mjs; returns its exit code and JSON lines (also kept in log_path).

    On a timeout the driver gets SIGTERM first (playwright then closes Chromium), SIGKILL last.
    """
    config_path = log_path.with_suffix(".json")
    config_path.write_text(json.dumps(config, indent=2))
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            ["node", str(DRIVER), str(config_path)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=ROOT,
            start_new_session=True,
        )
        out = ""
        try:
            out, _ = proc.communicate(timeout=DRIVER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.terminate()  # playwright closes Chromium on SIGTERM
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
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return proc.returncode, lines


def browser_pids(profile: Path) -> list[int]:
    """Processes started with ``--user-data-dir=<profile>``: this run's Chromium, nothing else."""
    flag = f"--user-data-dir={profile}".encode()
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if flag in cmdline.read_bytes().split(b"\0"):
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


def stop_browser(profile: Path) -> list[int]:
    """SIGKILL any Chromium of this run that outlived its driver; returns their pids."""
    pids = browser_pids(profile)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def get_call(server: ControlPlaneServer, key: str, call_id: str) -> dict[str, Any]:
    resp = httpx.get(
        f"{server.url}/api/v1/public/calls/{call_id}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def test_the_demo_page_says_how_to_build_it_when_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(WEB_DIR_ENV, str(tmp_path / "not-built"))
    app = FastAPI()
    install_demo_page(app)
    client = TestClient(app)
    page = client.get("/demo")
    assert page.status_code == 503 and "scripts/build-web" in page.text
    assert client.get("/demo/static/demo.js").status_code == 404
    (tmp_path / "not-built").mkdir()
    (tmp_path / "not-built" / "index.html").write_text("<title>built</title>")
    (tmp_path / "not-built" / "demo.js").write_text("export {};")
    assert client.get("/demo").text == "<title>built</title>"  # picked up without a restart
    assert client.get("/demo/static/demo.js").status_code == 200
    assert client.get("/demo/static/..%2F..%2F..%2Fetc%2Fpasswd").status_code == 404


def test_a_browser_makes_a_web_call_from_the_demo_page(
    browser_stack: ControlPlaneServer,
    emulators: EmulatorsProcess,
    chromium_path: str,
    artifacts_dir: Path,
    tmp_path: Path,
) -> None:
    server = browser_stack
    emulators.load_scenario(SCENARIO)
    key = server.create_key("acct_browser", "pk_live")  # a publishable key is enough
    wav = tmp_path / "caller.wav"
    speech_s = write_caller_wav(wav, CALLER_LINE)
    shutil.copy(wav, artifacts_dir / "browser-caller.wav")
    screenshot = artifacts_dir / "browser-call.png"
    screenshot.unlink(missing_ok=True)
    profile = tmp_path / "chromium-profile"
    config = {
        "chromium": chromium_path,
        "user_data_dir": str(profile),
        "page_url": f"{server.url}/demo",
        "api_key": key,
        "agent_id": SUPPORT,
        "participant_name": NAME,
        "wav": str(wav),
        "greeting": GREETING,
        "caller_contains": CALLER_LINE,
        "reply": REPLY,
        "screenshot": str(screenshot.resolve()),
        "failure_screenshot": str((artifacts_dir / "browser-call-failure.png").resolve()),
        "console_log": str((artifacts_dir / "browser-console.log").resolve()),
        "timeout_ms": STEP_TIMEOUT_MS,
    }
    try:
        code, lines = run_driver(config, artifacts_dir / "browser-call.log")
    finally:
        leftovers = stop_browser(profile)
    last = lines[-1] if lines else {"error": "the driver printed nothing"}
    assert code == 0 and "result" in last, (
        f"browser run failed (exit {code}): {json.dumps(last, indent=2)[:4000]}\n"
        f"see {artifacts_dir}/browser-call.log, browser-console.log, worker-browser.log"
    )
    result = last["result"]
    assert not leftovers, f"Chromium processes outlived the driver: {leftovers}"

    # the page received the agent's track (audio bytes flowing) and showed the greeting
    assert result["mid_call"]["agent_audio_bytes"] > 0, result["mid_call"]
    transcript = [(line["role"], line["text"]) for line in result["transcript"]]
    assert transcript == [("agent", GREETING), ("caller", CALLER_LINE), ("agent", REPLY)], (
        transcript
    )
    assert all(line["final"] for line in result["transcript"])
    assert result["error_text"] == ""

    # the STT emulator heard the browser's microphone, once (the WAV does not loop)
    stt = emulators.requests("stt")
    assert sum(r.get("audio_seconds", 0.0) for r in stt) >= speech_s, stt
    finals = [t for r in stt for t in r.get("transcripts", []) if t["is_final"]]
    assert [t["transcript"] for t in finals] == [CALLER_LINE], finals
    assert sum(len(r.get("speech_started", [])) for r in stt) == 1

    # the agent answered from the LLM emulator (the reply was spoken: it is in the transcript)
    llm = emulators.requests("llm")
    assert any(CALLER_LINE in json.dumps(r["messages"]) for r in llm), llm

    # the hang-up button ended the call; the page and the API agree
    assert (result["status"], result["ended_reason"]) == ("completed", "customer_hangup")
    call = get_call(server, key, result["call_id"])
    assert (call["status"], call["ended_reason"]) == ("completed", "customer_hangup")
    assert call["type"] == "web" and call["agent_id"] == SUPPORT
    assert call["duration_seconds"] > speech_s
    assert call["cost"]["amount"] > 0 and call["cost"]["currency"] == "USD"

    # the mid-call screenshot is kept as an artifact
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
