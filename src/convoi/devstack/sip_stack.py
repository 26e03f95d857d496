"""The real SIP bridge on loopback: Redis, livekit-server wired to it, and livekit-sip.

Tests use :class:`SipStack` as a session fixture::

    with SipStack(workdir=artifacts / "sip-stack") as stack:   # ~1 s when the binaries are built
        async with api.LiveKitAPI(stack.http_url, stack.api_key, stack.api_secret) as lk:
            result = await dial(lk, phone=phone_pointing_at_sipp, ...)

Outbound flow: ``CreateSIPParticipant`` → livekit-server → (psrpc over Redis) → livekit-sip →
INVITE to the trunk address (the phone number's ``sip.address``: SIPp in the tests). Server and
bridge must share the Redis, the API key and the secret.

Configuration (see ``../shared/vendor/livekit-sip/README.md``, "Traps"):

- livekit-sip: ``listen_ip`` and ``nat_1_to_1_ip`` 127.0.0.1 and ``use_external_ip: false`` (else
  it advertises the eth0 address), ``max_cpu_utilization: 1.0`` (turns off the CPU guard that
  refuses calls with "cpu exhausted" on a busy machine and right after start), its own
  ``rtp_port`` range (RTP sockets bind 0.0.0.0), ``health_port`` (``GET /`` answers ``OK``; it
  binds all interfaces, livekit-sip has no address setting for it) and ``logging: debug``:
  readiness is its ``service ready`` log line, which it logs at debug level only.
- livekit-server: ``redis`` plus ``rtc.stun_servers`` pointing at an unused loopback port (with
  none it hands clients, livekit-sip included, public STUN servers).
- Redis: ``--bind 127.0.0.1``, no persistence, its own folder.

Stopping livekit-sip sends SIGINT: it ends its calls (BYE) and exits. Its SIGTERM waits for
every call to finish first.

Ports: :class:`SipStack`'s defaults are the test stack's dedicated ports (livekit-server 7900,
rtc 7901/tcp 7902/udp, SIP 5070, RTP 20000-20100, health 7905, Redis a free port), clear of the
e2e livekit-server (7880-7882), ``tests/test_telephony.py``'s (7990-7992) and
``convoi-devstack up --sip`` (see :data:`DEVSTACK_PORTS`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final

import yaml

from convoi.devstack import install
from convoi.devstack.install import DevstackError
from convoi.devstack.livekit_server import LiveKitServer, ServerConfig
from convoi.devstack.state import http_ok, state_dir, stop_process

__all__ = [
    "DEVSTACK_PORTS",
    "HOST",
    "SERVICE_READY",
    "TEST_PORTS",
    "BridgeConfig",
    "LiveKitSip",
    "RedisServer",
    "SipPorts",
    "SipStack",
    "port_free",
    "render_bridge_config",
]

HOST: Final[str] = "127.0.0.1"
SERVICE_READY: Final[re.Pattern[str]] = re.compile(r"\tservice ready\b")
"""livekit-sip's readiness log line (debug level; ``sip service ready`` comes earlier, before it
subscribes to its psrpc topic, and does not count)."""
BRIDGE_ENV_DROP: Final[frozenset[str]] = frozenset(
    {
        "SIP_CONFIG_BODY",
        "SIP_CONFIG_FILE",
        "LIVEKIT_WS_URL",
        "LIVEKIT_API_KEY",
        "LIVEKIT_API_SECRET",
    }
)
"""Variables livekit-sip reads besides ``--config`` (``SIP_CONFIG_BODY`` would even win over it)."""


@dataclass(frozen=True)
class SipPorts:
    """The loopback ports of one SIP stack (``redis`` None: a free port at start)."""

    livekit: int
    rtc_tcp: int
    rtc_udp: int
    sip: int
    rtp: tuple[int, int]
    health: int | None
    redis: int | None
    stun: int = 3478
    """``rtc.stun_servers`` of livekit-server: nothing listens there (an unused port)."""


TEST_PORTS: Final[SipPorts] = SipPorts(
    livekit=7900, rtc_tcp=7901, rtc_udp=7902, sip=5070, rtp=(20000, 20100), health=7905, redis=None
)
""":class:`SipStack` defaults: the test suite's own SIP stack."""
DEVSTACK_PORTS: Final[SipPorts] = SipPorts(
    livekit=7880, rtc_tcp=7881, rtc_udp=7882, sip=5060, rtp=(10000, 10100), health=7885, redis=6390
)
"""``convoi-devstack up --sip`` defaults (livekit-server on the usual 7880)."""


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class BridgeConfig:
    """livekit-sip's settings (loopback only)."""

    ws_url: str
    redis_address: str
    api_key: str = "devkey"
    api_secret: str = "secret"
    sip_port: int = 5060
    rtp_ports: tuple[int, int] = (10000, 10100)
    health_port: int | None = None
    log_level: str = "debug"
    max_cpu_utilization: float = 1.0

    @property
    def sip_address(self) -> str:
        """``127.0.0.1:<sip_port>``: where livekit-sip takes SIP (UDP and TCP)."""
        return f"{HOST}:{self.sip_port}"


def render_bridge_config(cfg: BridgeConfig) -> str:
    """The livekit-sip YAML config for ``cfg`` (the vendor README's loopback configuration)."""
    data: dict[str, object] = {
        "api_key": cfg.api_key,
        "api_secret": cfg.api_secret,
        "ws_url": cfg.ws_url,
        "redis": {"address": cfg.redis_address},
        "sip_port": cfg.sip_port,
        "listen_ip": HOST,
        "rtp_port": f"{cfg.rtp_ports[0]}-{cfg.rtp_ports[1]}",
        "use_external_ip": False,
        "nat_1_to_1_ip": HOST,
        # 1.0 turns off the admission check that answers "cpu exhausted" (it reads host-wide CPU)
        "max_cpu_utilization": cfg.max_cpu_utilization,
        "logging": {"level": cfg.log_level},
    }
    if cfg.health_port:
        data["health_port"] = cfg.health_port
    return yaml.safe_dump(data, sort_keys=False)


# --------------------------------------------------------------------------- processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def port_free(port: int, kind: int = socket.SOCK_STREAM) -> bool:
    """True when ``port`` (TCP, or UDP with ``SOCK_DGRAM``) can be bound on 127.0.0.1 now."""
    with socket.socket(socket.AF_INET, kind) as s:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


class _Daemon:
    """A server process logging to a file, started in its own session when ``detach``."""

    name = "daemon"
    first_signal: signal.Signals = signal.SIGTERM

    def __init__(self, workdir: Path, *, detach: bool = False) -> None:
        self.workdir = workdir
        self.detach = detach
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    @property
    def pid(self) -> int | None:
        """Pid of the running process (None when not started)."""
        return self._proc.pid if self._proc else None

    @property
    def log_path(self) -> Path:
        """Where the process's stdout/stderr go."""
        return self.workdir / f"{self.name}.log"

    def command(self) -> list[str]:
        """The command line."""
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        return dict(os.environ)

    def _spawn(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=self._env(),
                start_new_session=self.detach,
            )

    def running(self) -> bool:
        """True while the started process has not exited."""
        return self._proc is not None and self._proc.poll() is None

    def log_text(self) -> str:
        """What the process wrote since this object started it."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(self._log_offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        """Last ``lines`` lines of this run's log."""
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(no output)"

    def _wait(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if self._proc is not None and self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise DevstackError(
                    f"{self.name} exited with code {code} before {what} "
                    f"(log {self.log_path}):\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise DevstackError(
                    f"{self.name}: no {what} within {timeout:.0f}s (log {self.log_path}):\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        """:attr:`first_signal`, then SIGKILL after ``timeout`` s."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        # detached: its own session, so the whole group (state.stop_process checks it leads one)
        stop_process(proc.pid, timeout=timeout, group=self.detach, sig=self.first_signal)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1.0)  # reaped by stop_process already: record the exit


class RedisServer(_Daemon):
    """``redis-server`` on 127.0.0.1 without persistence, in its own folder."""

    name = "redis"

    def __init__(
        self,
        port: int | None = None,
        *,
        workdir: Path | None = None,
        detach: bool = False,
        timeout: float = 15.0,
    ) -> None:
        self.port = port or _free_port()
        super().__init__(workdir or state_dir() / f"redis-{self.port}", detach=detach)
        self.timeout = timeout

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>`` (what livekit-server and livekit-sip are given)."""
        return f"{HOST}:{self.port}"

    def command(self) -> list[str]:
        """``redis-server --port … --bind 127.0.0.1`` with no RDB/AOF files."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise DevstackError(
                "redis-server not found on PATH: apt-get install redis-server "
                "(scripts/bootstrap installs it)"
            )
        return [
            binary,
            "--port", str(self.port),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self.workdir),
        ]  # fmt: skip

    def ping(self) -> bool:
        """True when Redis answers ``PING`` with ``+PONG``."""
        try:
            with socket.create_connection((HOST, self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> RedisServer:
        """Start and wait until it answers PING."""
        if self.running():
            return self
        self._spawn()
        self._wait(self.ping, self.timeout, "PONG")
        return self


class LiveKitSip(_Daemon):
    """livekit-sip (the pinned build, :func:`convoi.devstack.install.ensure`) on loopback."""

    name = "livekit-sip"
    first_signal = signal.SIGINT  # ends the calls; SIGTERM would wait for them

    def __init__(
        self,
        config: BridgeConfig,
        *,
        workdir: Path | None = None,
        binary: Path | None = None,
        detach: bool = False,
        timeout: float = 30.0,
    ) -> None:
        super().__init__(workdir or state_dir() / f"livekit-sip-{config.sip_port}", detach=detach)
        self.config = config
        self.binary = binary
        self.timeout = timeout

    @property
    def config_path(self) -> Path:
        """Where the generated YAML config is written."""
        return self.workdir / "livekit-sip.yaml"

    @property
    def health_url(self) -> str | None:
        """``http://127.0.0.1:<health_port>/`` (answers ``OK``), None without a health port."""
        port = self.config.health_port
        return f"http://{HOST}:{port}/" if port else None

    def command(self) -> list[str]:
        """``livekit-sip --config <workdir>/livekit-sip.yaml``."""
        binary = self.binary or install.binary_path("livekit-sip")
        return [str(binary), "--config", str(self.config_path)]

    def _env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if k not in BRIDGE_ENV_DROP}

    def ready(self) -> bool:
        """True once this run logged ``service ready`` (and the health port answers ``OK``)."""
        if not SERVICE_READY.search(self.log_text()):
            return False
        return self.health_url is None or http_ok(self.health_url, expect="OK")

    def start(self) -> LiveKitSip:
        """Write the config, start, and wait for ``service ready``."""
        if self.running():
            return self
        if self.binary is None:
            self.binary = install.ensure("livekit-sip")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(render_bridge_config(self.config))
        self._spawn()
        self._wait(self.ready, self.timeout, "'service ready' log line")
        return self


# --------------------------------------------------------------------------- the stack


class SipStack:
    """Redis + livekit-server (with that Redis) + livekit-sip on loopback; stops what it started.

    Every port is checked before anything starts: one in use is a :class:`DevstackError` naming
    it (nothing is reused). ``workdir`` holds ``redis/``, ``livekit-server/`` and
    ``livekit-sip/`` (configs and logs); default: their own folders under ``.devstack/``.
    ``detach``: the processes get their own session and outlive this Python process (the CLI).
    """

    def __init__(
        self,
        ports: SipPorts = TEST_PORTS,
        *,
        api_key: str = "devkey",
        api_secret: str = "secret",
        workdir: Path | None = None,
        detach: bool = False,
        timeout: float = 60.0,
        server_log_level: str = "info",
        bridge_log_level: str = "debug",
    ) -> None:
        self.ports = ports
        workdir = workdir.resolve() if workdir is not None else None  # daemons run in their dirs
        self.workdir = workdir
        self.detach = detach
        self.timeout = timeout
        self.redis = RedisServer(
            ports.redis,
            workdir=workdir / "redis" if workdir else None,
            detach=detach,
            timeout=min(timeout, 15.0),
        )
        self.server_config = ServerConfig(
            port=ports.livekit,
            rtc_tcp_port=ports.rtc_tcp,
            rtc_udp_port=ports.rtc_udp,
            api_key=api_key,
            api_secret=api_secret,
            redis_address=self.redis.address,
            log_level=server_log_level,
            stun_servers=(f"{HOST}:{ports.stun}",),
        )
        self.server = LiveKitServer(
            self.server_config,
            workdir=workdir / "livekit-server" if workdir else None,
            reuse=False,
            detach=detach,
            health_timeout=timeout,
        )
        self.bridge_config = BridgeConfig(
            ws_url=self.server_config.url,
            redis_address=self.redis.address,
            api_key=api_key,
            api_secret=api_secret,
            sip_port=ports.sip,
            rtp_ports=ports.rtp,
            health_port=ports.health,
            log_level=bridge_log_level,
        )
        self.bridge = LiveKitSip(
            self.bridge_config,
            workdir=workdir / "livekit-sip" if workdir else None,
            detach=detach,
            timeout=min(timeout, 30.0),
        )

    # ---------------------------------------------------------------- what tests read

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<livekit port>`` (LIVEKIT_URL of a worker)."""
        return self.server_config.url

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:<livekit port>`` (for ``livekit.api.LiveKitAPI``)."""
        return self.server_config.http_url

    @property
    def api_key(self) -> str:
        """API key of livekit-server (and livekit-sip)."""
        return self.server_config.api_key

    @property
    def api_secret(self) -> str:
        """Secret of :attr:`api_key`."""
        return self.server_config.api_secret

    @property
    def sip_address(self) -> str:
        """``127.0.0.1:<sip port>``: livekit-sip's own SIP address (inbound / a SIPp caller).

        Not a trunk address: outbound trunks point at the callee (SIPp), never at this."""
        return self.bridge_config.sip_address

    @property
    def redis_address(self) -> str:
        """``127.0.0.1:<redis port>``."""
        return self.redis.address

    def logs(self) -> dict[str, Path]:
        """Component name -> log file."""
        return {
            "redis": self.redis.log_path,
            "livekit-server": self.server.log_path,
            "livekit-sip": self.bridge.log_path,
        }

    def worker_env(self) -> dict[str, str]:
        """What a worker dialling through this bridge needs (its LiveKit server; the bridge's own
        SIP address for reference)."""
        return {
            "LIVEKIT_URL": self.url,
            "LIVEKIT_API_KEY": self.api_key,
            "LIVEKIT_API_SECRET": self.api_secret,
            "CONVOI_SIP_BRIDGE_ADDRESS": self.sip_address,
        }

    # ---------------------------------------------------------------- lifecycle

    def busy_ports(self) -> list[str]:
        """The stack's ports something else holds right now (``"7900/tcp (livekit-server)"``)."""
        p = self.ports
        checks: list[tuple[int, int, str]] = [
            (p.livekit, socket.SOCK_STREAM, "livekit-server"),
            (p.rtc_tcp, socket.SOCK_STREAM, "livekit-server rtc"),
            (p.rtc_udp, socket.SOCK_DGRAM, "livekit-server rtc"),
            (p.sip, socket.SOCK_DGRAM, "livekit-sip"),
            (p.sip, socket.SOCK_STREAM, "livekit-sip"),
            (self.redis.port, socket.SOCK_STREAM, "redis"),
        ]
        if p.health:
            checks.append((p.health, socket.SOCK_STREAM, "livekit-sip health"))
        return [
            f"{port}/{'udp' if kind == socket.SOCK_DGRAM else 'tcp'} ({what})"
            for port, kind, what in checks
            if not port_free(port, kind)
        ]

    def start(self) -> SipStack:
        """Start Redis, livekit-server, livekit-sip (building it first if needed); wait for each.

        On any failure, stops what it started and raises :class:`DevstackError`.
        """
        busy = self.busy_ports()
        if busy:
            raise DevstackError(
                f"cannot start the SIP stack: in use on {HOST}: {', '.join(busy)} "
                "(another stack still running? `convoi-devstack down`, or pick other ports)"
            )
        install.ensure("livekit-server")
        self.bridge.binary = self.bridge.binary or install.ensure("livekit-sip")
        try:
            self.redis.start()
            self.server.start()
            self.bridge.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop livekit-sip (ends its calls), livekit-server, Redis; each only if started."""
        self.bridge.stop()
        self.server.stop()
        self.redis.stop()

    def __enter__(self) -> SipStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
