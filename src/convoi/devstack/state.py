"""The devstack state file and helpers for processes that outlive the CLI.

``convoi-devstack up`` records what it started in ``<state>/state.json`` where ``<state>`` is
``$CONVOI_STATE_DIR`` or ``<repo>/.devstack`` (git-ignored); ``down`` stops exactly those
processes. Each record keeps the command line so that a recycled pid is never signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from convoi.devstack.install import repo_root

__all__ = [
    "Component",
    "State",
    "http_ok",
    "pid_alive",
    "port_open",
    "state_dir",
    "stop_process",
    "wait_until",
]


def state_dir() -> Path:
    """``$CONVOI_STATE_DIR`` or ``<repo>/.devstack``."""
    env = os.environ.get("CONVOI_STATE_DIR")
    return Path(env).expanduser().resolve() if env else repo_root() / ".devstack"


@dataclass
class Component:
    """One process (or reused service) recorded by ``up``."""

    name: str
    pid: int | None
    owned: bool
    cmd: list[str] = field(default_factory=list)
    log: str | None = None
    ports: dict[str, int] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    health_url: str | None = None
    started_at: float = field(default_factory=time.time)
    stop_signal: str = "SIGTERM"
    """What ``down`` sends first (livekit-sip: ``SIGINT``, which ends its calls; its SIGTERM
    waits for every call to finish)."""

    def running(self) -> bool:
        """True when the recorded pid is alive and still runs the recorded command."""
        return self.pid is not None and pid_alive(self.pid, self.cmd[:1])

    def healthy(self) -> bool:
        """True when the component answers its health check (HTTP 200 or an open port)."""
        if self.health_url:
            return http_ok(self.health_url)
        return bool(self.ports) and all(port_open("127.0.0.1", p) for p in self.ports.values())


@dataclass
class State:
    """Everything ``up`` started, plus the environment a worker needs."""

    components: dict[str, Component] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def path() -> Path:
        """Location of the state file."""
        return state_dir() / "state.json"

    @classmethod
    def load(cls) -> State:
        """Read the state file (an empty state when there is none)."""
        p = cls.path()
        if not p.is_file():
            return cls()
        data: dict[str, Any] = json.loads(p.read_text())
        comps = {k: Component(**v) for k, v in data.get("components", {}).items()}
        return cls(components=comps, env=dict(data.get("env", {})))

    def save(self) -> None:
        """Write the state file atomically."""
        p = self.path()
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".json.tmp")
        data = {"components": {k: asdict(c) for k, c in self.components.items()}, "env": self.env}
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(p)

    @classmethod
    def clear(cls) -> None:
        """Remove the state file."""
        cls.path().unlink(missing_ok=True)


# --------------------------------------------------------------------------- processes / probes


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def pid_alive(pid: int, expect_argv0: list[str] | None = None) -> bool:
    """True when ``pid`` exists, is not a zombie and (if given) runs ``expect_argv0[0]``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    except (OSError, IndexError):
        pass
    if expect_argv0:
        argv = _cmdline(pid)
        if argv is not None and not (argv and _same_program(argv[0], expect_argv0[0])):
            return False
    return True


def _same_program(argv0: str, expected: str) -> bool:
    """True when ``argv0`` names the program ``expected``. Redis rewrites its title to
    ``redis-server 127.0.0.1:6390``, so the first word counts too."""
    want = Path(expected).name
    return Path(argv0).name == want or Path(argv0.split(" ", 1)[0]).name == want


def stop_process(
    pid: int,
    *,
    timeout: float = 10.0,
    group: bool = True,
    sig: signal.Signals = signal.SIGTERM,
) -> bool:
    """Send ``sig`` to ``pid`` (its process group when ``group``), SIGKILL after ``timeout`` s.

    Returns True when the process is gone.
    """

    def send(which: signal.Signals) -> None:
        try:
            if group and os.getpgid(pid) == pid:
                os.killpg(pid, which)
            else:
                os.kill(pid, which)
        except ProcessLookupError:
            pass

    def gone() -> bool:
        with contextlib.suppress(ChildProcessError):  # our own child: reap it (no zombie)
            os.waitpid(pid, os.WNOHANG)
        return not pid_alive(pid)

    if not pid_alive(pid):
        return True
    send(sig)
    if wait_until(gone, timeout):
        return True
    send(signal.SIGKILL)
    return wait_until(gone, 5.0)


def wait_until(pred: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``pred()`` until it is truthy or ``timeout`` seconds pass; return the last result."""
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def http_ok(url: str, timeout: float = 1.0, expect: str | None = None) -> bool:
    """True when GET ``url`` answers 200 (and its body, stripped, equals ``expect`` if given)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            if resp.status != 200:
                return False
            return expect is None or resp.read(256).decode(errors="replace").strip() == expect
    except (urllib.error.URLError, OSError, ValueError):
        return False


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
