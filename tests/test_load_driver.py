"""The load test's lean clients (convoi.devstack.load_driver), without the Calls API.

- merged driver reports: every sample, wall time from the first start to the last answer, the
  drivers' CPU summed; the table's rows (counts, rates, nearest-rank percentiles, statuses);
- the driver imports neither the control plane nor httpx;
- driver processes against a stub Calls API in this process: every client creates, replays and
  reads, and the measured requests ride the connections opened in the warm-up.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from aiohttp import web

from convoi.devstack.load_driver import (
    CALLS,
    DriverResult,
    LoadReport,
    Sample,
    drive_processes,
    merge,
    percentile,
)
from tests.helpers import free_port


def _samples(kind: str, status: int, *ms: float) -> list[Sample]:
    return [Sample(kind, status, m / 1000) for m in ms]


def test_percentile_is_the_nearest_rank() -> None:
    ordered = [float(n) for n in range(1, 101)]
    assert percentile(ordered, 0.5) == 51.0  # rank round(0.5 * 99) = 50 (0-based)
    assert percentile(ordered, 0.95) == 95.0
    assert percentile(ordered, 0.99) == 99.0
    assert percentile([7.0], 0.99) == 7.0


def test_merged_drivers_are_timed_from_the_first_start_to_the_last_answer() -> None:
    first = LoadReport(
        samples=_samples("create", 201, 10, 20) + _samples("get", 200, 5),
        driver_cpu_seconds=0.25,
    )
    second = LoadReport(
        samples=_samples("create", 201, 30) + _samples("create", 503, 40),
        driver_cpu_seconds=0.5,
    )
    merged = merge([DriverResult(first, 100.0, 101.0), DriverResult(second, 100.01, 102.0)])
    assert len(merged.samples) == 5
    assert merged.seconds == pytest.approx(2.0)
    assert merged.driver_cpu_seconds == pytest.approx(0.75)
    assert [s.status for s in merged.server_errors] == [503]
    merged.cpu_seconds = 0.05  # the API's, measured by the load test
    rows = merged.lines("SQLite, 1")
    assert rows == [
        "| SQLite, 1 | all | 5 | 2 | 20 | 40 | 40 | 200×1, 201×3, 503×1 | 10.0 |",
        "| SQLite, 1 | create | 4 | 2 | 25 | 40 | 40 | 201×3, 503×1 |  |",
        "| SQLite, 1 | get | 1 | 0 | 5 | 5 | 5 | 200×1 |  |",
    ]


def test_the_driver_imports_neither_the_control_plane_nor_httpx() -> None:
    probe = (
        "import sys, convoi.devstack.load_driver; "
        "print([m for m in sys.modules if m.startswith(('convoi.controlplane', 'httpx', "
        "'livekit', 'openai', 'sqlalchemy', 'pydantic'))])"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


class StubCallsApi:
    """Just enough of the Calls API for the driver: create (idempotent by key), read, health;
    each request's client port recorded."""

    def __init__(self) -> None:
        self.answers: dict[str, str] = {}
        self.ids = itertools.count(1)
        self.warm_ports: set[int] = set()
        self.call_ports: set[int] = set()
        self.app = web.Application()
        self.app.router.add_get("/healthz", self._health)
        self.app.router.add_post(CALLS, self._create)
        self.app.router.add_get(CALLS + "/{id}", self._get)

    @staticmethod
    def _port(request: web.Request) -> int:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        return int(peer[1]) if peer else 0

    async def _health(self, request: web.Request) -> web.Response:
        self.warm_ports.add(self._port(request))
        return web.json_response({"status": "ok"})

    async def _create(self, request: web.Request) -> web.Response:
        self.call_ports.add(self._port(request))
        key = request.headers["Idempotency-Key"]
        if key not in self.answers:
            body = await request.json()
            self.answers[key] = json.dumps({"id": f"call_{next(self.ids)}", **body})
        return web.Response(text=self.answers[key], status=201, content_type="application/json")

    async def _get(self, request: web.Request) -> web.Response:
        self.call_ports.add(self._port(request))
        return web.json_response({"id": request.match_info["id"]})


@pytest.fixture
def stub_api() -> Iterator[tuple[str, StubCallsApi]]:
    """The stub on a free port, served by an event loop in a thread of this process."""
    stub, port = StubCallsApi(), free_port()
    loop = asyncio.new_event_loop()

    async def serve() -> web.AppRunner:
        runner = web.AppRunner(stub.app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    runner = loop.run_until_complete(serve())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", stub
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def test_driver_processes_start_warm_and_merge_every_client(
    stub_api: tuple[str, StubCallsApi],
) -> None:
    url, stub = stub_api
    report = drive_processes(url, "sk_test", "agt_x", clients=7, processes=2)
    creates, replays, gets = report.of("create"), report.of("replay"), report.of("get")
    assert [s.status for s in creates + replays] == [201] * 14
    assert [s.status for s in gets] == [200] * 7
    by_key = {s.idempotency_key: s for s in creates}
    assert len(by_key) == 7
    assert all(r.body == by_key[r.idempotency_key].body for r in replays)
    loads = sorted(json.loads(s.body)["metadata"]["load"] for s in creates)
    assert loads == list(range(7))  # the two shares (4 + 3) numbered without overlap
    assert {s.call_id for s in gets} == {s.call_id for s in creates}
    assert stub.call_ports <= stub.warm_ports  # measured on the warm-up's connections
    assert 0 < report.seconds < 60 and report.driver_cpu_seconds > 0
