"""Load test of the Calls API: hundreds of concurrent clients create, replay and read calls.

``python -m convoi.devstack.loadtest [--clients 200] [--latency-ms 20] [--postgres URL]`` serves
``convoi-api`` with uvicorn on a free port (a fake LiveKit whose every call takes
``--latency-ms``), on a fresh SQLite file and, with ``--postgres`` (a server URL, e.g. from
``scripts/postgres start``), on a fresh PostgreSQL database, and prints per database and per
request kind: throughput, latency p50/p99 and the answers by status. Each client POSTs a web call
with its own ``Idempotency-Key``, POSTs it again (a replay) and GETs it. A measurement, not a CI
gate (tests/test_controlplane_load.py asserts the outcomes with :func:`drive`).
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
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from convoi.controlplane.settings import ControlPlaneSettings
from convoi.devstack.controlplane_fakes import FakeLiveKitGateway
from convoi.devstack.controlplane_harness import ControlPlaneServer

__all__ = ["LoadReport", "Sample", "drive", "main", "web_call_body"]

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

    def of(self, kind: str) -> list[Sample]:
        """The samples of one kind."""
        return [s for s in self.samples if s.kind == kind]

    @property
    def server_errors(self) -> list[Sample]:
        """5xx answers and requests that got no answer at all."""
        return [s for s in self.samples if s.status >= 500 or s.status == 0]

    def _row(self, label: str, kind: str, samples: list[Sample]) -> str:
        ms = sorted(s.seconds * 1000 for s in samples)
        p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
        counts = sorted(Counter(s.status for s in samples).items())
        statuses = ", ".join(f"{status}×{n}" for status, n in counts)
        return (
            f"| {label} | {kind} | {len(samples)} | {len(samples) / self.seconds:.0f} | "
            f"{statistics.median(ms):.0f} | {p99:.0f} | {statuses} |"
        )

    def lines(self, label: str) -> list[str]:
        """Table rows: label, kind (all, then each), requests, req/s, p50 ms, p99 ms, statuses."""
        rows = [self._row(label, "all", self.samples)]
        for kind in KINDS:
            if samples := self.of(kind):
                rows.append(self._row(label, kind, samples))
        return rows


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


async def drive(base_url: str, api_key: str, agent_id: str, *, clients: int = 200) -> LoadReport:
    """Run ``clients`` concurrent clients (create, replay, GET) against ``base_url``."""
    headers = {"Authorization": f"Bearer {api_key}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    timeout = httpx.Timeout(120.0)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as client:
        start = time.perf_counter()
        results = await asyncio.gather(
            *(_client(client, headers, web_call_body(agent_id, n)) for n in range(clients))
        )
        report = LoadReport(seconds=time.perf_counter() - start)
    report.samples = [s for samples in results for s in samples]
    return report


def settings_for(database_url: str, config_dir: Path) -> ControlPlaneSettings:
    """Settings for a load run: limits high enough for one key's burst."""
    values: dict[str, Any] = {
        "CONVOI_DATABASE_URL": database_url,
        "CONVOI_CONFIG_DIR": config_dir,
        "CONVOI_EVENTS_SECRET": "loadtest-secret",
        "CONVOI_RATE_LIMIT_SK_PER_MINUTE": 0,
        "CONVOI_MAX_CONCURRENT_CALLS": 0,
        "CONVOI_CALL_LEASE_SECONDS": 3600,
        "CONVOI_CALL_START_LEASE_SECONDS": 3600,
    }
    return ControlPlaneSettings(**values)


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


def drive_blocking(base_url: str, api_key: str, agent_id: str, clients: int) -> LoadReport:
    """:func:`drive`, for a child process."""
    return asyncio.run(drive(base_url, api_key, agent_id, clients=clients))


def run(
    database_url: str, config_dir: Path, agent_id: str, clients: int, latency: float
) -> LoadReport:
    """Serve the API on ``database_url`` and drive it once from another process (own CPU)."""
    gateway = FakeLiveKitGateway(latency_s=latency)
    with ControlPlaneServer(settings_for(database_url, config_dir), gateway) as server:
        key = server.create_key("acct_load")
        drive_blocking(server.url, key, agent_id, 20)  # warm-up (connections, caches)
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            return pool.apply(drive_blocking, (server.url, key, agent_id, clients))


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module doc)."""
    parser = argparse.ArgumentParser(prog="python -m convoi.devstack.loadtest")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=20.0, help="fake LiveKit per call")
    parser.add_argument("--postgres", help="PostgreSQL server URL (scripts/postgres start)")
    parser.add_argument("--config-dir", type=Path, default=Path("agents_config"))
    parser.add_argument("--agent-id", default="agt_b88d642dd68747f28305c428b209xxxx")
    args = parser.parse_args(argv)
    print("| database | request | count | req/s | p50 ms | p99 ms | statuses |")
    print("|---|---|---|---|---|---|---|")
    errors = 0
    with tempfile.TemporaryDirectory(prefix="convoi-load-") as folder:
        targets = [("SQLite", f"sqlite:///{folder}/load.sqlite3")]
        for label, url in targets:
            report = run(url, args.config_dir, args.agent_id, args.clients, args.latency_ms / 1000)
            print("\n".join(report.lines(label)), flush=True)
            errors += len(report.server_errors)
    if args.postgres:
        with postgres_database(args.postgres) as url:
            report = run(url, args.config_dir, args.agent_id, args.clients, args.latency_ms / 1000)
            print("\n".join(report.lines("PostgreSQL")), flush=True)
            errors += len(report.server_errors)
    print(f"5xx or unanswered: {errors}")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
