"""Load test of the Calls API: hundreds of concurrent clients create, replay and read calls.

``python -m convoi.devstack.loadtest [--clients 200] [--drivers 4] [--processes N]
[--livekit real|fake] [--latency-ms 20] [--postgres URL] [--no-sqlite] [--redis]
[--sk-per-minute N]`` serves ``convoi-api serve --processes N`` (real OS processes on one port;
default as ``CONVOI_API_PROCESSES``: 1 on SQLite, one per CPU on PostgreSQL) on a fresh SQLite
file and, with ``--postgres`` (a server URL, e.g. from ``scripts/postgres start``), on a fresh
PostgreSQL database. The API calls LiveKit through the real livekit-api gateway:

- ``--livekit real`` (the default once the pinned livekit-server is built: ``convoi-devstack
  install``): a livekit-server of its own on 127.0.0.1:7960 (RTC 7961/tcp, 7962/udp). No worker
  is registered, so every CreateAgentDispatch stays pending, and the rooms wait for nobody;
- ``--livekit fake``: :mod:`convoi.devstack.fake_livekit`, every Twirp call answered after
  ``--latency-ms``.

``--redis`` starts a redis-server and sets ``CONVOI_REDIS_URL`` (the rate limit is then counted
there: set ``--sk-per-minute``). After a warm-up of 20 clients, ``--clients`` clients run in
``--drivers`` processes of :mod:`convoi.devstack.load_driver` (the standard library and aiohttp,
nothing of the control plane) that open their connections first and start together. Each client
POSTs a web call with its own ``Idempotency-Key``, POSTs it again (a replay) and GETs it.

It prints which LiveKit was used, then per database and per request kind: throughput, latency
p50/p95/p99, the answers by status, and the CPU the API processes spent per request (a figure a
busy machine distorts less than latency), then the wall time and the CPU of the clients and of
LiveKit, then (``--alone N``, default 50; 0 skips it) what each kind costs the API when its
requests are sent one at a time, without queueing. Progress goes to stderr. A measurement,
not a CI gate (tests/test_controlplane_load.py and tests/test_controlplane_scale.py assert the
outcomes with :func:`drive`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import psutil
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from convoi.controlplane.settings import ControlPlaneSettings
from convoi.devstack import install
from convoi.devstack.api_processes import ApiProcess, FakeLiveKitProcess, LiveKitTarget
from convoi.devstack.livekit_server import LiveKitServer, ServerConfig
from convoi.devstack.load_driver import (
    HEADER,
    DriverProcesses,
    KindCost,
    LoadReport,
    Sample,
    drive,
    drive_processes,
    one_at_a_time,
    percentile,
    web_call_body,
)
from convoi.devstack.sip_stack import RedisServer

__all__ = [
    "HEADER",
    "REAL_LIVEKIT",
    "LiveKitUsed",
    "LoadReport",
    "RunOptions",
    "Sample",
    "api_env",
    "default_livekit",
    "drive",
    "drive_processes",
    "livekit_for",
    "main",
    "percentile",
    "postgres_database",
    "run",
    "web_call_body",
]

LiveKitKind = Literal["real", "fake"]

REAL_LIVEKIT = ServerConfig(port=7960, rtc_tcp_port=7961, rtc_udp_port=7962)
"""The real livekit-server's ports: its own, beside the tests' (7880, 7900, 7980)."""


def _say(line: str) -> None:
    """Progress, on stderr (stdout holds the results)."""
    print(line, file=sys.stderr, flush=True)


UNREACHED_CONCURRENCY_LIMIT = 1_000_000
"""Calls in progress per account in a load run: counted under the account's lock, never reached."""


def api_env(database_url: str, config_dir: Path, sk_per_minute: int = 0) -> dict[str, str]:
    """The API processes' settings for a load run: limits high enough for one key's burst (the
    concurrency limit is still checked on every create, as in production: it never refuses)."""
    return {
        "CONVOI_DATABASE_URL": database_url,
        "CONVOI_CONFIG_DIR": str(config_dir.resolve()),
        "CONVOI_EVENTS_SECRET": "loadtest-events-secret",
        "CONVOI_RATE_LIMIT_SK_PER_MINUTE": str(sk_per_minute),
        "CONVOI_MAX_CONCURRENT_CALLS": str(UNREACHED_CONCURRENCY_LIMIT),
        "CONVOI_CALL_LEASE_SECONDS": "3600",
        "CONVOI_CALL_START_LEASE_SECONDS": "3600",
        "CONVOI_DEV_API_KEYS": f"acct_load={LOAD_KEY}",
    }


LOAD_KEY = "sk_live_loadtest0123456789abcdef"
"""The load run's API key (stored by ``CONVOI_DEV_API_KEYS``: local use only)."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its children (the API's worker processes); 0 for 0."""
    if not pid:
        return 0.0
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


@contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """A fresh database on the PostgreSQL server (dropped afterwards); yields its URL."""
    admin_url = make_url(server_url).set(drivername="postgresql+psycopg")
    name = f"convoi_load_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield admin_url.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@dataclass(frozen=True)
class RunOptions:
    """One load run's shape."""

    clients: int = 200
    processes: int = 0
    livekit: LiveKitKind = "fake"
    latency_ms: float = 20.0
    """The fake LiveKit's time per Twirp call."""
    config_dir: Path = Path("agents_config")
    agent_id: str = "agt_b88d642dd68747f28305c428b209xxxx"
    redis_url: str | None = None
    sk_per_minute: int = 0
    drivers: int = 4
    alone: int = 50
    """Requests of each kind then sent one at a time, for their cost alone (0: none)."""


@dataclass(frozen=True)
class LiveKitUsed:
    """The LiveKit of a run: what the API processes call, its process id (for its CPU), and
    what to call it in the output."""

    target: LiveKitTarget
    pid: int
    label: str


def default_livekit() -> LiveKitKind:
    """``real`` when the pinned livekit-server is built, else ``fake``."""
    return "real" if install.is_installed("livekit-server") else "fake"


@contextmanager
def livekit_for(options: RunOptions, workdir: Path) -> Iterator[LiveKitUsed]:
    """Start the LiveKit of ``options.livekit`` (files in ``workdir``); stop it afterwards."""
    if options.livekit == "real":
        version = install.TOOLS["livekit-server"].version
        _say(f"starting livekit-server {version} on {REAL_LIVEKIT.url}…")
        server = LiveKitServer(REAL_LIVEKIT, workdir=workdir / "livekit-server", reuse=False)
        with server:
            yield LiveKitUsed(server, server.pid or 0, f"livekit-server {version}, {server.url}")
    else:
        _say("starting the fake LiveKit…")
        with FakeLiveKitProcess(workdir, latency_ms=options.latency_ms) as fake:
            label = f"fake ({options.latency_ms:g} ms per Twirp call), {fake.ws_url}"
            yield LiveKitUsed(fake, fake.pid, label)


def run(database_url: str, options: RunOptions, workdir: Path, livekit: LiveKitUsed) -> LoadReport:
    """Serve ``convoi-api`` on ``database_url`` in real processes calling ``livekit``, warm it
    up, and drive it once; the CPU of the API and of LiveKit counted from the clients' start."""
    env = api_env(database_url, options.config_dir, options.sk_per_minute)
    if options.processes:
        env["CONVOI_API_PROCESSES"] = str(options.processes)
    if options.redis_url:
        env["CONVOI_REDIS_URL"] = options.redis_url
    with ApiProcess(workdir, env, livekit.target, processes=options.processes) as api:
        _say("warm-up: 20 clients…")
        warm = asyncio.run(drive(api.url, LOAD_KEY, options.agent_id, clients=20))
        if warm.server_errors:
            raise RuntimeError(f"warm-up failed: {warm.server_errors[:3]}\n{api.log_tail()}")
        _say(f"{options.drivers} driver processes opening {options.clients} connections…")
        with DriverProcesses(
            api.url,
            LOAD_KEY,
            options.agent_id,
            clients=options.clients,
            processes=options.drivers,
        ) as drivers:
            _say(f"driving {options.clients} clients…")
            api_before, livekit_before = cpu_seconds(api.pid), cpu_seconds(livekit.pid)
            report = drivers.run()
            report.cpu_seconds = cpu_seconds(api.pid) - api_before
            report.livekit_cpu_seconds = cpu_seconds(livekit.pid) - livekit_before
        if options.alone:
            _say(f"one at a time: {options.alone} of each kind…")
            report.alone = asyncio.run(
                one_at_a_time(
                    api.url,
                    LOAD_KEY,
                    options.agent_id,
                    lambda: cpu_seconds(api.pid),
                    count=options.alone,
                )
            )
    return report


def _options(argv: list[str] | None) -> tuple[RunOptions, str | None, bool, bool]:
    parser = argparse.ArgumentParser(prog="python -m convoi.devstack.loadtest")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument(
        "--processes", type=int, default=0, help="API processes (0: CONVOI_API_PROCESSES default)"
    )
    parser.add_argument(
        "--livekit",
        choices=("real", "fake"),
        help="a livekit-server of its own (default when built), or the fake",
    )
    parser.add_argument("--latency-ms", type=float, default=20.0, help="fake LiveKit per call")
    parser.add_argument("--postgres", help="PostgreSQL server URL (scripts/postgres start)")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--redis", action="store_true", help="start Redis, set CONVOI_REDIS_URL")
    parser.add_argument("--sk-per-minute", type=int, default=0, help="the key's rate limit")
    parser.add_argument("--drivers", type=int, default=4, help="client processes")
    parser.add_argument(
        "--alone", type=int, default=50, help="then N of each kind one at a time (0: skip)"
    )
    parser.add_argument("--config-dir", type=Path, default=Path("agents_config"))
    parser.add_argument("--agent-id", default=RunOptions.agent_id)
    args = parser.parse_args(argv)
    options = RunOptions(
        clients=args.clients,
        processes=args.processes,
        livekit=args.livekit or _default_livekit_noted(),
        latency_ms=args.latency_ms,
        config_dir=args.config_dir,
        agent_id=args.agent_id,
        sk_per_minute=args.sk_per_minute,
        drivers=args.drivers,
        alone=args.alone,
    )
    return options, args.postgres, args.redis, args.no_sqlite


def _default_livekit_noted() -> LiveKitKind:
    kind = default_livekit()
    if kind == "fake":
        _say(
            "note: livekit-server is not built (convoi-devstack install), so the API calls the "
            "fake LiveKit; --livekit real builds it first"
        )
    return kind


def _targets(
    folder: str, postgres: str | None, no_sqlite: bool
) -> list[tuple[str, AbstractContextManager[str]]]:
    """The databases to run on: (label, a context yielding its URL)."""
    targets: list[tuple[str, AbstractContextManager[str]]] = []
    if not no_sqlite:
        targets.append(("SQLite", nullcontext(f"sqlite:///{folder}/load.sqlite3")))
    if postgres:
        targets.append(("PostgreSQL", postgres_database(postgres)))
    return targets


def _api_processes(options: RunOptions, database_url: str) -> int:
    """How many API processes serve ``database_url``."""
    settings = ControlPlaneSettings(CONVOI_DATABASE_URL=database_url)  # type: ignore[call-arg]
    return options.processes or settings.processes


def _cpu_line(report: LoadReport) -> str:
    """The run's wall time, and the CPU of the clients (per request too) and of LiveKit."""
    per_request = report.driver_cpu_seconds * 1000 / len(report.samples)
    return (
        f"  ({report.seconds:.1f} s; CPU: clients {report.driver_cpu_seconds:.2f} s = "
        f"{per_request:.1f} ms/request, LiveKit {report.livekit_cpu_seconds:.2f} s)"
    )


def _alone_line(cost: KindCost) -> str:
    """What one request of a kind costs the API when sent alone."""
    return (
        f"  one at a time, {cost.kind}: API CPU {cost.api_cpu_ms:.1f} ms/request, "
        f"p50 {cost.p50_ms:.1f} ms ({cost.count}: {cost.statuses})"
    )


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module doc)."""
    options, postgres, redis, no_sqlite = _options(argv)
    errors = 0
    with tempfile.TemporaryDirectory(prefix="convoi-load-") as folder, ExitStack() as stack:
        workdir = Path(folder)
        if redis:
            server = stack.enter_context(_redis(workdir))
            options = replace(options, redis_url=f"redis://{server.address}/0")
        livekit = stack.enter_context(livekit_for(options, workdir))
        print(f"LiveKit: {livekit.label}")
        print(HEADER, flush=True)
        for label, database in _targets(folder, postgres, no_sqlite):
            with database as url:
                processes = _api_processes(options, url)
                _say(f"{label}: starting the API ({processes} process{'es' * (processes != 1)})…")
                report = run(url, options, workdir, livekit)
            print("\n".join(report.lines(f"{label}, {processes}")))
            print(_cpu_line(report), flush=True)
            for cost in report.alone:
                print(_alone_line(cost), flush=True)
            errors += len(report.server_errors)
    print(f"5xx or unanswered: {errors}")
    return 1 if errors else 0


@contextmanager
def _redis(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir=workdir / "redis").start()
    try:
        yield server
    finally:
        server.stop()


if __name__ == "__main__":
    raise SystemExit(main())
