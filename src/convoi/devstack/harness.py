"""Processes of a local call: the provider emulators, the worker, and dispatching a call.

Used by the end-to-end tests and the demo. Each process logs to its own file; waits are on log
lines or health checks with generous timeouts, never on fixed sleeps.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from livekit import api

from convoi.devstack.caller import CallerReport, CallerScript, caller_token, run_caller
from convoi.devstack.state import http_ok

__all__ = [
    "EmulatorsProcess",
    "ManagedProcess",
    "ReceiverProcess",
    "WorkerProcess",
    "dispatch_call",
    "free_port",
    "place_call",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ManagedProcess:
    """A child process with its output in ``log_path``."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        """Start the process (own process group, so stop() takes its children too)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            start_new_session=True,
        )
        log.close()
        return self

    def running(self) -> bool:
        """True while the process has not exited."""
        return self.proc is not None and self.proc.poll() is None

    def text(self) -> str:
        """Everything the process has written so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 40) -> str:
        """The last lines of the log (for error messages)."""
        return "\n".join(self.text().splitlines()[-lines:])

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``predicate`` until true; raise with the log tail on timeout or early exit."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if not self.running():
                raise RuntimeError(f"{self.name} exited while waiting for {what}:\n{self.tail()}")
            time.sleep(0.05)
        raise TimeoutError(f"{self.name}: no {what} after {timeout:.0f}s:\n{self.tail()}")

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the process group, SIGKILL after ``timeout``; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
            except ProcessLookupError:
                pass
        return self.proc.returncode


class EmulatorsProcess(ManagedProcess):
    """``python -m convoi.devstack.emulators`` on a free port."""

    def __init__(
        self, log_path: Path, *, port: int | None = None, scenario: Path | None = None
    ) -> None:
        self.port = port or free_port()
        argv = [
            sys.executable,
            "-m",
            "convoi.devstack.emulators",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        if scenario is not None:
            argv += ["--scenario", str(scenario)]
        super().__init__("emulators", argv, log_path)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def provider_env(self) -> dict[str, str]:
        """Variables that point the worker's real plugins at these emulators."""
        return {
            "OPENAI_BASE_URL": f"{self.base_url}/openai/v1",
            "OPENAI_API_KEY": "emulator-openai-key",
            "DEEPGRAM_BASE_URL": f"{self.base_url}/deepgram/v1/listen",
            "DEEPGRAM_API_KEY": "emulator-deepgram-key",
            "ELEVEN_BASE_URL": f"{self.base_url}/elevenlabs/v1",
            "ELEVEN_API_KEY": "emulator-eleven-key",
        }

    def load_scenario(self, scenario: Path | Mapping[str, Any]) -> None:
        """Replace the scenario (a YAML/JSON file or a mapping); clears records and cursors."""
        if isinstance(scenario, Path):
            scenario = yaml.safe_load(scenario.read_text())
        resp = httpx.post(f"{self.base_url}/_emulator/scenario", json=scenario, timeout=30)
        if resp.status_code != 200:
            raise ValueError(f"emulators refused the scenario: {resp.text}")

    def requests(self, provider: str | None = None) -> list[dict[str, Any]]:
        """Recorded provider requests, in order (``llm``, ``stt`` or ``tts``; all when None)."""
        params = {"provider": provider} if provider else {}
        resp = httpx.get(f"{self.base_url}/_emulator/requests", params=params, timeout=30)
        resp.raise_for_status()
        return list(resp.json())

    def start_and_wait(self, timeout: float = 60.0) -> EmulatorsProcess:
        """Start and wait until ``/_emulator/health`` answers."""
        self.start()
        self.wait_for(lambda: http_ok(f"{self.base_url}/_emulator/health"), timeout, "health")
        return self


class ReceiverProcess(ManagedProcess):
    """The reference event receiver (``python -m convoi.receiver``) on a fixed port.

    Stopping and starting it again keeps its port and database: that is a receiver outage.
    """

    SECRET_ENV = "CONVOI_EVENTS_SECRET"

    def __init__(self, log_path: Path, db: Path, secret: str, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.secret = secret
        argv = [
            sys.executable,
            "-m",
            "convoi.receiver",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--db",
            str(db),
            "--secret-env",
            self.SECRET_ENV,
        ]
        super().__init__("receiver", argv, log_path, {self.SECRET_ENV: secret})

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (what the worker's CONVOI_API_URL points at)."""
        return f"http://127.0.0.1:{self.port}"

    def worker_env(self) -> dict[str, str]:
        """Variables that make a worker deliver its events here."""
        return {"CONVOI_API_URL": self.base_url, "CONVOI_EVENTS_SECRET": self.secret}

    def start_and_wait(self, timeout: float = 60.0) -> ReceiverProcess:
        """Start (again) and wait until ``/healthz`` answers."""
        self.start()
        self.wait_for(lambda: http_ok(f"{self.base_url}/healthz"), timeout, "health")
        return self

    def events(self, call_id: str) -> list[dict[str, Any]]:
        """Stored events of a call, in sequence order."""
        resp = httpx.get(f"{self.base_url}/internal/v1/calls/{call_id}/events", timeout=30)
        resp.raise_for_status()
        body = resp.json()
        return list(body["events"] if isinstance(body, dict) else body)

    def call(self, call_id: str) -> dict[str, Any] | None:
        """The receiver's latest state of a call (None when it has no event of it)."""
        resp = httpx.get(f"{self.base_url}/internal/v1/calls/{call_id}", timeout=30)
        return None if resp.status_code == 404 else resp.json()

    def wait_for_event(self, call_id: str, type_: str, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until an event of ``type_`` of the call has been stored; return it."""

        def found() -> dict[str, Any] | None:
            return next((e for e in self.events(call_id) if e.get("type") == type_), None)

        self.wait_for(lambda: found() is not None, timeout, f"{type_} of {call_id}")
        event = found()
        assert event is not None
        return event


class WorkerProcess(ManagedProcess):
    """``convoi-worker start`` (JSON logs) registered under ``agent_name``."""

    def __init__(self, log_path: Path, env: Mapping[str, str], *, agent_name: str) -> None:
        self.agent_name = agent_name
        full_env = {
            "CONVOI_AGENT_NAME": agent_name,
            "CONVOI_HEALTH_PORT": "0",
            "CONVOI_LOG_FORMAT": "json",
            **env,
        }
        super().__init__(
            "worker", [sys.executable, "-m", "convoi.worker.cli", "start"], log_path, full_env
        )

    def records(self) -> list[dict[str, Any]]:
        """The worker's JSON log lines, parsed (other lines skipped)."""
        out = []
        for line in self.text().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def find(self, message: str, **fields: Any) -> list[dict[str, Any]]:
        """Log records whose message starts with ``message`` and whose fields match."""
        return [
            r
            for r in self.records()
            if str(r.get("message", "")).startswith(message)
            and all(r.get(k) == v for k, v in fields.items())
        ]

    def wait_for_record(
        self, message: str, timeout: float = 120.0, **fields: Any
    ) -> dict[str, Any]:
        """Wait for a log record (see :meth:`find`) and return it."""
        self.wait_for(
            lambda: bool(self.find(message, **fields)),
            timeout,
            f"log line {message!r} {fields or ''}",
        )
        return self.find(message, **fields)[0]

    def start_and_wait(self, timeout: float = 120.0) -> WorkerProcess:
        """Start and wait until the worker has registered with livekit-server."""
        self.start()
        self.wait_for_record("registered worker", timeout)
        return self


async def dispatch_call(
    url: str,
    api_key: str,
    api_secret: str,
    *,
    agent_name: str,
    room: str,
    metadata: str | Mapping[str, Any],
) -> api.AgentDispatch:
    """Create ``room`` and dispatch ``agent_name`` into it with ``metadata`` (the CallSpec)."""
    http_url = url.replace("ws://", "http://").replace("wss://", "https://")
    body = metadata if isinstance(metadata, str) else json.dumps(metadata)
    async with api.LiveKitAPI(http_url, api_key, api_secret) as lk:
        await lk.room.create_room(api.CreateRoomRequest(name=room, empty_timeout=120))
        return await lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name=agent_name, room=room, metadata=body)
        )


async def place_call(
    url: str,
    api_key: str,
    api_secret: str,
    *,
    agent_name: str,
    spec: Mapping[str, Any],
    script: CallerScript,
    identity: str = "caller",
    name: str | None = None,
    room_prefix: str = "call",
) -> CallerReport:
    """Dispatch ``spec`` into a new room and join it as the scripted caller (or the phone)."""
    room = f"{room_prefix}-{uuid.uuid4().hex[:8]}"
    await dispatch_call(url, api_key, api_secret, agent_name=agent_name, room=room, metadata=spec)
    token = caller_token(api_key, api_secret, room, identity, name=name)
    return await run_caller(url, token, script)
