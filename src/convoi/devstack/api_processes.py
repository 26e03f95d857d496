"""Real ``convoi-api serve`` processes and the (fake) LiveKit they call, as subprocesses.

Devstack-only (tests and the load test). Unlike
:class:`~convoi.devstack.controlplane_harness.ControlPlaneServer` (the app in a thread of the
test process) these are separate OS processes, as in a deployment::

    with FakeLiveKitProcess(latency_ms=20) as livekit, ApiProcess(env, livekit, processes=2) as api:
        httpx.post(api.url + "/api/v1/public/calls", ...)
        livekit.dispatch_rooms()      # every CreateDispatch the API processes sent

An :class:`ApiProcess` calls any :class:`LiveKitTarget`: the fake, or a real
:class:`~convoi.devstack.livekit_server.LiveKitServer`. Each process writes its output to a log
file in ``workdir`` (read it when something fails).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

import httpx

__all__ = ["ApiProcess", "FakeLiveKitProcess", "LiveKitTarget", "free_port"]

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class LiveKitTarget(Protocol):
    """A LiveKit server the API processes call: its URL and credentials."""

    @property
    def ws_url(self) -> str:
        """What ``LIVEKIT_URL`` is set to."""
        ...

    @property
    def api_key(self) -> str:
        """``LIVEKIT_API_KEY``."""
        ...

    @property
    def api_secret(self) -> str:
        """``LIVEKIT_API_SECRET``."""
        ...


class _Process:
    """A subprocess logging to ``workdir/<name>.log``, ready when ``url + ready_path`` answers."""

    name = "process"
    ready_path = "/"

    def __init__(self, workdir: Path, port: int | None = None, timeout: float = 300.0) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.timeout = timeout
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The process id (0 when not running)."""
        return self._proc.pid if self._proc is not None else 0

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        """Where the process's output goes."""
        return self.workdir / f"{self.name}-{self.port}.log"

    def command(self) -> list[str]:
        """The command line."""
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """The environment."""
        return dict(os.environ)

    def start(self) -> Self:
        """Start, and return once it answers (its log's tail in the error otherwise)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=self.env()
            )
        deadline = time.monotonic() + self.timeout
        # one client for every poll, plain HTTP: no TLS context built per poll
        with httpx.Client(verify=False, timeout=2.0) as client:
            while not self._answers(client):
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{self.name} did not start:\n{self.log_tail()}")
                time.sleep(0.1)  # polling a starting process, not synchronising a test
        return self

    def _answers(self, client: httpx.Client) -> bool:
        try:
            return client.get(self.url + self.ready_path).status_code < 500
        except httpx.HTTPError:
            return False

    def log_tail(self, lines: int = 40) -> str:
        """The end of the log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (uvicorn stops its workers), then SIGKILL after ``timeout`` s."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class FakeLiveKitProcess(_Process):
    """``python -m convoi.devstack.fake_livekit`` (each Twirp call takes ``latency_ms``).

    A :class:`LiveKitTarget`: any key and secret will do (the fake checks that a token is there,
    not its signature)."""

    name = "fake-livekit"
    ready_path = "/fake/dispatches"
    api_key = "devkey"
    api_secret = "secret"

    def __init__(self, workdir: Path, *, latency_ms: float = 0.0, port: int | None = None) -> None:
        super().__init__(workdir, port)
        self.latency_ms = latency_ms

    @property
    def ws_url(self) -> str:
        """What ``LIVEKIT_URL`` is set to."""
        return f"ws://{HOST}:{self.port}"

    def command(self) -> list[str]:
        """The command line."""
        return [
            sys.executable, "-m", "convoi.devstack.fake_livekit",
            "--port", str(self.port), "--latency-ms", str(self.latency_ms),
        ]  # fmt: skip

    def dispatch_rooms(self) -> list[str]:
        """The room of every CreateDispatch received so far."""
        answer = httpx.get(self.url + "/fake/dispatches", timeout=30.0)
        answer.raise_for_status()
        return list(answer.json()["rooms"])


class ApiProcess(_Process):
    """``convoi-api serve --processes N`` with ``env`` (plus ``LIVEKIT_*`` of ``livekit``)."""

    name = "convoi-api"
    ready_path = "/healthz"

    def __init__(
        self,
        workdir: Path,
        env: Mapping[str, str],
        livekit: LiveKitTarget,
        *,
        processes: int = 1,
        port: int | None = None,
    ) -> None:
        super().__init__(workdir, port)
        self._env = dict(env)
        self.livekit = livekit
        self.processes = processes

    def command(self) -> list[str]:
        """The command line."""
        return [
            sys.executable, "-m", "convoi.controlplane.cli", "serve",
            "--port", str(self.port), "--processes", str(self.processes),
            "--log-level", "warning", "--timeout-keep-alive", "60",
        ]  # fmt: skip

    def env(self) -> dict[str, str]:
        """The test's environment, this process's settings and the LiveKit to call."""
        return {
            **os.environ,
            **self._env,
            "LIVEKIT_URL": self.livekit.ws_url,
            "LIVEKIT_API_KEY": self.livekit.api_key,
            "LIVEKIT_API_SECRET": self.livekit.api_secret,
        }
