"""Load test of the Calls API: hundreds of concurrent clients create, replay and read calls.

``python -m convoi.devstack.loadtest [--clients 200] [--processes N] [--latency-ms 20]
[--postgres URL] [--redis]`` serves ``convoi-api serve --processes N`` (real OS processes on one
port; default as ``CONVOI_API_PROCESSES``: 1 on SQLite, one per CPU on PostgreSQL) against a fake
LiveKit server process whose every Twirp call takes ``--latency-ms``
(:mod:`convoi.devstack.fake_livekit`, called through the real livekit-api gateway), on a fresh
SQLite file and, with ``--postgres`` (a server URL, e.g. from ``scripts/postgres start``), on a
fresh PostgreSQL database. ``--redis`` starts a redis-server and sets ``CONVOI_REDIS_URL`` (the
rate limit is then counted there: set ``--sk-per-minute``). Each client POSTs a web call with its
own ``Idempotency-Key``, POSTs it again (a replay) and GETs it; the driver runs in this process.
It prints per database and per request kind: throughput, latency p50/p95/p99, the answers by
status, and the CPU the API processes spent per request (a figure a busy machine distorts less
than latency). A measurement, not a CI gate (tests/test_controlplane_load.py and
tests/test_controlplane_scale.py assert the outcomes with :func:`drive`).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import psutil
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from convoi.controlplane.settings import ControlPlaneSettings
from convoi.devstack.api_processes import ApiProcess, FakeLiveKitProcess
from convoi.devstack.sip_stack import RedisServer

__all__ = [
    "LoadReport",
    "RunOptions",
    "Sample",
    "api_env",
    "drive",
    "drive_processes",
    "main",
    "percentile",
    "run",
    "web_call_body",
]

CALLS = "/api/v1/public/calls"
KINDS = ("create", "replay", "get")


@dataclass(frozen=True, slots=True)
class Sample:
    """One request: its kind, status (0: no answer), seconds, and the call id it named."""

    kind: str
    status: int
    seconds: float
    call_id: str | None = None
    idempotency_key: str | None = None
    body: str = ""


@dataclass
class LoadReport:
    """Every sample of a run and how long it took."""

    samples: list[Sample] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    """CPU the API processes spent during the run (0: not measured)."""
    driver_cpu_seconds: float = 0.0
    """CPU the clients spent."""

    def of(self, kind: str) -> list[Sample]:
        """The samples of one kind."""
        return [s for s in self.samples if s.kind == kind]

    @property
    def server_errors(self) -> list[Sample]:
        """5xx answers and requests that got no answer at all."""
        return [s for s in self.samples if s.status >= 500 or s.status == 0]

    def _row(self, label: str, kind: str, samples: list[Sample]) -> str:
        ms = sorted(s.seconds * 1000 for s in samples)
        counts = sorted(Counter(s.status for s in samples).items())
        statuses = ", ".join(f"{status}×{n}" for status, n in counts)
        cpu = f"{self.cpu_seconds * 1000 / len(self.samples):.1f}" if kind == "all" else ""
        return (
            f"| {label} | {kind} | {len(samples)} | {len(samples) / self.seconds:.0f} | "
            f"{statistics.median(ms):.0f} | {percentile(ms, 0.95):.0f} | "
            f"{percentile(ms, 0.99):.0f} | {statuses} | {cpu} |"
        )

    def lines(self, label: str) -> list[str]:
        """Table rows (see :data:`HEADER`): all requests, then each kind."""
        rows = [self._row(label, "all", self.samples)]
        for kind in KINDS:
            if samples := self.of(kind):
                rows.append(self._row(label, kind, samples))
        return rows


HEADER = (
    "| database, processes | request | count | req/s | p50 ms | p95 ms | p99 ms | statuses "
    "| API CPU ms/request |\n|---|---|---|---|---|---|---|---|---|"
)


def percentile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile of sorted values (nearest rank)."""
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def web_call_body(agent_id: str, n: int) -> dict[str, object]:
    """A web call for ``agent_id``, distinct per ``n``."""
    return {"type": "web", "agent_id": agent_id, "metadata": {"load": n}}


async def _timed(
    client: httpx.AsyncClient, kind: str, method: str, url: str, **kwargs: object
) -> tuple[Sample, httpx.Response | None]:
    start = time.perf_counter()
    try:
        response = await client.request(method, url, **kwargs)  # type: ignore[arg-type]
    except httpx.HTTPError as exc:
        return Sample(kind, 0, time.perf_counter() - start, body=repr(exc)), None
    seconds = time.perf_counter() - start
    key = dict(kwargs.get("headers") or {}).get("Idempotency-Key")  # type: ignore[call-overload]
    call_id = response.json().get("id") if response.status_code in (200, 201) else None
    return Sample(kind, response.status_code, seconds, call_id, key, response.text), response


async def _client(
    client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, object]
) -> list[Sample]:
    """Create (own key), replay, read."""
    create_headers = {**headers, "Idempotency-Key": str(uuid.uuid4())}
    created, response = await _timed(
        client, "create", "POST", CALLS, json=body, headers=create_headers
    )
    samples = [created]
    replayed, _ = await _timed(client, "replay", "POST", CALLS, json=body, headers=create_headers)
    samples.append(replayed)
    if response is not None and created.call_id:
        got, _ = await _timed(client, "get", "GET", f"{CALLS}/{created.call_id}", headers=headers)
        samples.append(got)
    return samples


async def drive(
    base_url: str, api_key: str, agent_id: str, *, clients: int = 200, first: int = 0
) -> LoadReport:
    """Run ``clients`` concurrent clients (create, replay, GET) against ``base_url``."""
    headers = {"Authorization": f"Bearer {api_key}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    timeout = httpx.Timeout(120.0)
    cpu = time.process_time()
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as client:
        start = time.perf_counter()
        bodies = (web_call_body(agent_id, first + n) for n in range(clients))
        results = await asyncio.gather(*(_client(client, headers, body) for body in bodies))
        report = LoadReport(seconds=time.perf_counter() - start)
    report.samples = [s for samples in results for s in samples]
    report.driver_cpu_seconds = time.process_time() - cpu
    return report


def _drive_share(args: tuple[str, str, str, int, int]) -> LoadReport:
    base_url, api_key, agent_id, clients, first = args
    return asyncio.run(drive(base_url, api_key, agent_id, clients=clients, first=first))


def drive_processes(
    base_url: str, api_key: str, agent_id: str, *, clients: int, processes: int
) -> LoadReport:
    """:func:`drive` split over ``processes`` driver processes (one Python client process
    cannot keep 200 clients busy on its own); their samples merged."""
    shares = [clients // processes + (i < clients % processes) for i in range(processes)]
    firsts = [sum(shares[:i]) for i in range(processes)]
    jobs = [(base_url, api_key, agent_id, n, f) for n, f in zip(shares, firsts, strict=True)]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        reports = pool.map(_drive_share, jobs)
    merged = LoadReport(seconds=max(r.seconds for r in reports))
    merged.samples = [s for r in reports for s in r.samples]
    merged.driver_cpu_seconds = sum(r.driver_cpu_seconds for r in reports)
    return merged


def api_env(database_url: str, config_dir: Path, sk_per_minute: int = 0) -> dict[str, str]:
    """The API processes' settings for a load run: limits high enough for one key's burst."""
    return {
        "CONVOI_DATABASE_URL": database_url,
        "CONVOI_CONFIG_DIR": str(config_dir.resolve()),
        "CONVOI_EVENTS_SECRET": "loadtest-events-secret",
        "CONVOI_RATE_LIMIT_SK_PER_MINUTE": str(sk_per_minute),
        "CONVOI_MAX_CONCURRENT_CALLS": "0",
        "CONVOI_CALL_LEASE_SECONDS": "3600",
        "CONVOI_CALL_START_LEASE_SECONDS": "3600",
        "CONVOI_DEV_API_KEYS": f"acct_load={LOAD_KEY}",
    }


LOAD_KEY = "sk_live_loadtest0123456789abcdef"
"""The load run's API key (stored by ``CONVOI_DEV_API_KEYS``: local use only)."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its children (the API's worker processes)."""
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
    latency_ms: float = 20.0
    config_dir: Path = Path("agents_config")
    agent_id: str = "agt_b88d642dd68747f28305c428b209xxxx"
    redis_url: str | None = None
    sk_per_minute: int = 0
    drivers: int = 4


def run(database_url: str, options: RunOptions, workdir: Path) -> LoadReport:
    """Serve ``convoi-api`` on ``database_url`` in real processes and drive it once."""
    env = api_env(database_url, options.config_dir, options.sk_per_minute)
    if options.processes:
        env["CONVOI_API_PROCESSES"] = str(options.processes)
    if options.redis_url:
        env["CONVOI_REDIS_URL"] = options.redis_url
    with (
        FakeLiveKitProcess(workdir, latency_ms=options.latency_ms) as livekit,
        ApiProcess(workdir, env, livekit, processes=options.processes) as api,
    ):
        warm = asyncio.run(drive(api.url, LOAD_KEY, options.agent_id, clients=20))
        if warm.server_errors:
            raise RuntimeError(f"warm-up failed: {warm.server_errors[:3]}\n{api.log_tail()}")
        before = cpu_seconds(api.pid)
        report = drive_processes(
            api.url,
            LOAD_KEY,
            options.agent_id,
            clients=options.clients,
            processes=options.drivers,
        )
        report.cpu_seconds = cpu_seconds(api.pid) - before
    return report


def _options(argv: list[str] | None) -> tuple[RunOptions, str | None, bool, bool]:
    parser = argparse.ArgumentParser(prog="python -m convoi.devstack.loadtest")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument(
        "--processes", type=int, default=0, help="API processes (0: CONVOI_API_PROCESSES default)"
    )
    parser.add_argument("--latency-ms", type=float, default=20.0, help="fake LiveKit per call")
    parser.add_argument("--postgres", help="PostgreSQL server URL (scripts/postgres start)")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--redis", action="store_true", help="start Redis, set CONVOI_REDIS_URL")
    parser.add_argument("--sk-per-minute", type=int, default=0, help="the key's rate limit")
    parser.add_argument("--drivers", type=int, default=4, help="client processes")
    parser.add_argument("--config-dir", type=Path, default=Path("agents_config"))
    parser.add_argument("--agent-id", default=RunOptions.agent_id)
    args = parser.parse_args(argv)
    options = RunOptions(
        clients=args.clients,
        processes=args.processes,
        latency_ms=args.latency_ms,
        config_dir=args.config_dir,
        agent_id=args.agent_id,
        sk_per_minute=args.sk_per_minute,
        drivers=args.drivers,
    )
    return options, args.postgres, args.redis, args.no_sqlite


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module doc)."""
    options, postgres, redis, no_sqlite = _options(argv)
    print(HEADER, flush=True)
    errors = 0
    with tempfile.TemporaryDirectory(prefix="convoi-load-") as folder, ExitStack() as stack:
        workdir = Path(folder)
        if redis:
            server = stack.enter_context(_redis(workdir))
            options = replace(options, redis_url=f"redis://{server.address}/0")
        targets: list[tuple[str, Any]] = []
        if not no_sqlite:
            targets.append(("SQLite", nullcontext(f"sqlite:///{folder}/load.sqlite3")))
        if postgres:
            targets.append(("PostgreSQL", postgres_database(postgres)))
        for label, database in targets:
            with database as url:
                report = run(url, options, workdir)
            processes = (
                options.processes
                or ControlPlaneSettings(
                    CONVOI_DATABASE_URL=url  # type: ignore[call-arg]
                ).processes
            )
            print("\n".join(report.lines(f"{label}, {processes}")), flush=True)
            print(f"  ({report.seconds:.1f} s; clients' CPU {report.driver_cpu_seconds:.1f} s)")
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
