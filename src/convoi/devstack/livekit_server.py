"""A real livekit-server on loopback: config, start, health wait, stop.

Tests use :class:`LiveKitServer` as a fixture::

    with LiveKitServer() as server:          # reuses a server already answering on the port
        token = AccessToken(server.api_key, server.api_secret)...
        await room.connect(server.url, token)

The config follows DEVSTACK.md: everything on 127.0.0.1, ``use_external_ip: false``,
``node_ip: 127.0.0.1`` and ``enable_loopback_candidate: true`` (without it nothing listens for
media on 127.0.0.1). With SIP (:mod:`convoi.devstack.sip_stack`) it also gets ``redis`` and
``rtc.stun_servers`` pointing at an unused loopback port.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import yaml

from convoi.devstack import install
from convoi.devstack.install import DevstackError
from convoi.devstack.state import http_ok, state_dir, stop_process

__all__ = ["LiveKitServer", "ServerConfig", "render_config"]

HOST = "127.0.0.1"


@dataclass(frozen=True)
class ServerConfig:
    """Ports and keys of a loopback livekit-server."""

    port: int = 7880
    rtc_tcp_port: int = 7881
    rtc_udp_port: int = 7882
    api_key: str = "devkey"
    api_secret: str = "secret"
    redis_address: str | None = None  # "127.0.0.1:6379" once livekit-sip joins
    log_level: str = "info"
    stun_servers: tuple[str, ...] = ()
    """``rtc.stun_servers``. Empty: livekit-server hands its clients (livekit-sip among them)
    public STUN servers; the SIP stack points them at an unused loopback port instead."""

    @property
    def url(self) -> str:
        """WebSocket URL clients connect to."""
        return f"ws://{HOST}:{self.port}"

    @property
    def http_url(self) -> str:
        """HTTP URL of the server (health check and Twirp API)."""
        return f"http://{HOST}:{self.port}"


def render_config(cfg: ServerConfig) -> str:
    """The livekit-server YAML config for ``cfg`` (loopback only)."""
    data: dict[str, object] = {
        "port": cfg.port,
        "bind_addresses": [HOST],
        "keys": {cfg.api_key: cfg.api_secret},
        "rtc": {
            "tcp_port": cfg.rtc_tcp_port,
            "udp_port": cfg.rtc_udp_port,
            "use_external_ip": False,
            "node_ip": HOST,
            "enable_loopback_candidate": True,
            # Only 127.0.0.1 for media: without this the UDP mux also listens on (and the server
            # advertises) the machine's other addresses, e.g. its IPv6 address.
            "ips": {"includes": [f"{HOST}/32"]},
        },
        "logging": {"level": cfg.log_level},
    }
    if cfg.stun_servers:
        rtc = data["rtc"]
        assert isinstance(rtc, dict)
        rtc["stun_servers"] = list(cfg.stun_servers)
    if cfg.redis_address:
        data["redis"] = {"address": cfg.redis_address}
    return yaml.safe_dump(data, sort_keys=False)


def _server_env() -> dict[str, str]:
    """The environment minus livekit-server's own overrides (keys/config from the caller)."""
    drop = {"LIVEKIT_KEYS", "LIVEKIT_CONFIG", "LIVEKIT_CONFIG_FILE", "LIVEKIT_REDIS_HOST"}
    return {k: v for k, v in os.environ.items() if k not in drop}


class LiveKitServer:
    """Start (or reuse) a livekit-server on loopback and stop what was started.

    ``reuse``: if something already answers ``OK`` on the port, use it and never stop it
    (like livekit/agents' tests do). ``detach``: start in a new session so the server outlives
    this Python process (the CLI's ``up``).
    """

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        workdir: Path | None = None,
        binary: Path | None = None,
        reuse: bool = True,
        detach: bool = False,
        health_timeout: float = 60.0,
    ) -> None:
        self.config = config or ServerConfig()
        self.workdir = workdir
        self.binary = binary
        self.reuse = reuse
        self.detach = detach
        self.health_timeout = health_timeout
        self.reused = False
        self._proc: subprocess.Popen[bytes] | None = None

    # ---------------------------------------------------------------- properties

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>``."""
        return self.config.url

    @property
    def ws_url(self) -> str:
        """:attr:`url` (as :class:`~convoi.devstack.api_processes.LiveKitTarget` names it)."""
        return self.config.url

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:<port>`` (for ``livekit.api.LiveKitAPI``)."""
        return self.config.http_url

    @property
    def api_key(self) -> str:
        """API key the server accepts."""
        return self.config.api_key

    @property
    def api_secret(self) -> str:
        """Secret for :attr:`api_key`."""
        return self.config.api_secret

    @property
    def pid(self) -> int | None:
        """Pid of the server this object started (None when reused or not started)."""
        return self._proc.pid if self._proc else None

    @property
    def log_path(self) -> Path:
        """Where the server's stdout/stderr go."""
        return self._workdir() / "livekit-server.log"

    @property
    def config_path(self) -> Path:
        """Where the generated YAML config is written."""
        return self._workdir() / "livekit-server.yaml"

    def command(self) -> list[str]:
        """The command line that starts the server."""
        binary = self.binary or install.binary_path("livekit-server")
        return [str(binary), "--config", str(self.config_path)]

    def _workdir(self) -> Path:
        return self.workdir or state_dir() / f"livekit-server-{self.config.port}"

    # ---------------------------------------------------------------- lifecycle

    def healthy(self) -> bool:
        """True when ``GET /`` answers ``OK``."""
        return http_ok(self.http_url + "/", expect="OK")

    def start(self) -> LiveKitServer:
        """Reuse a running server or start one and wait until it is healthy."""
        if self._proc is not None:
            return self
        if self.reuse and self.healthy():
            self.reused = True
            return self
        if self.binary is None:
            self.binary = install.ensure("livekit-server")
        wd = self._workdir()
        wd.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(render_config(self.config))
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=wd,
                start_new_session=self.detach,
                env=_server_env(),
            )
        self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float | None = None) -> None:
        """Poll ``GET /`` until ``OK``; raise with the log tail if the server dies or times out."""
        deadline = time.monotonic() + (timeout or self.health_timeout)
        while not self.healthy():
            if self._proc is not None and self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise DevstackError(
                    f"livekit-server exited with code {code} before becoming healthy "
                    f"(log {self.log_path}):\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise DevstackError(
                    f"livekit-server did not answer OK on {self.http_url}/ within "
                    f"{timeout or self.health_timeout:.0f}s (log {self.log_path}):\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` s. No-op for a reused server."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        # detached: its own session, so the whole group (state.stop_process checks it leads one)
        stop_process(proc.pid, timeout=timeout, group=self.detach, sig=signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1.0)  # reaped by stop_process already: record the exit

    def log_tail(self, lines: int = 20) -> str:
        """Last ``lines`` lines of the server log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> LiveKitServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
