"""The load test's clients: lean, so that they measure the Calls API and not themselves.

Only the standard library and aiohttp: a driver imports nothing of the control plane (whose
imports, livekit-agents and openai among them, cost 1–2 CPU-seconds) and sends its requests over
one aiohttp session (httpx cost ≈ 15 ms of client CPU per request, as much as the API's own).

- :func:`drive`: ``clients`` concurrent clients in this process. Each POSTs a web call with its
  own ``Idempotency-Key``, POSTs it again (a replay) and GETs it. The tests call it in-process.
- :class:`DriverProcesses` (and :func:`drive_processes`, its one-call form): the same clients
  split over N driver processes. Each opens its keep-alive connections first (``GET /healthz``),
  then all start at one moment; their samples are merged, timed from that moment to the last
  answer.
- :func:`one_at_a_time`: each kind sent alone, for what it costs the API without queueing.

A driver process is ``python -m convoi.devstack.load_driver``, talking over its pipes, one line
each way at a time: the job (JSON) → ``ready`` → ``go`` → the result (JSON). Not
:mod:`multiprocessing`: a spawned child first re-imports the parent's ``__main__`` module
(``convoi.devstack.loadtest``, and the control plane with it), while the other drivers run.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import IO, Any, Self

import aiohttp

__all__ = [
    "CALLS",
    "HEADER",
    "KINDS",
    "DriverProcesses",
    "DriverResult",
    "KindCost",
    "LoadReport",
    "Sample",
    "drive",
    "drive_processes",
    "merge",
    "one_at_a_time",
    "percentile",
    "web_call_body",
]

CALLS = "/api/v1/public/calls"
KINDS = ("create", "replay", "get")
HEALTH = "/healthz"
TIMEOUT_S = 120.0
"""A request's total timeout, and how long an idle connection is kept."""


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
    livekit_cpu_seconds: float = 0.0
    """CPU the LiveKit server (real or fake) spent during the run (0: not measured)."""
    alone: list[KindCost] = field(default_factory=list)
    """Each kind sent one at a time after the run (:func:`one_at_a_time`), if asked."""

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


# ------------------------------------------------------------------------ clients


def _session(base_url: str, clients: int) -> aiohttp.ClientSession:
    """One session for ``clients`` clients: as many keep-alive connections, no cookies."""
    connector = aiohttp.TCPConnector(limit=clients, keepalive_timeout=TIMEOUT_S)
    return aiohttp.ClientSession(
        base_url,
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
        cookie_jar=aiohttp.DummyCookieJar(),
    )


def _call_id(text: str) -> str | None:
    try:
        answer = json.loads(text)
    except ValueError:
        return None
    call_id = answer.get("id") if isinstance(answer, dict) else None
    return call_id if isinstance(call_id, str) else None


async def _timed(
    session: aiohttp.ClientSession,
    kind: str,
    method: str,
    path: str,
    headers: dict[str, str],
    body: dict[str, object] | None = None,
) -> Sample:
    """One request, timed until its whole answer is read."""
    start = time.perf_counter()
    try:
        async with session.request(method, path, json=body, headers=headers) as response:
            text = await response.text(encoding="utf-8")
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Sample(kind, 0, time.perf_counter() - start, body=repr(exc))
    seconds = time.perf_counter() - start
    call_id = _call_id(text) if response.status in (200, 201) else None
    key = headers.get("Idempotency-Key")
    return Sample(kind, response.status, seconds, call_id, key, text)


async def _client(
    session: aiohttp.ClientSession, headers: dict[str, str], body: dict[str, object]
) -> list[Sample]:
    """Create (own key), replay, read."""
    create_headers = {**headers, "Idempotency-Key": str(uuid.uuid4())}
    created = await _timed(session, "create", "POST", CALLS, create_headers, body)
    replayed = await _timed(session, "replay", "POST", CALLS, create_headers, body)
    samples = [created, replayed]
    if created.call_id:
        samples.append(await _timed(session, "get", "GET", f"{CALLS}/{created.call_id}", headers))
    return samples


async def _run(
    session: aiohttp.ClientSession, api_key: str, agent_id: str, clients: int, first: int
) -> LoadReport:
    """``clients`` concurrent clients on ``session``: their samples, wall time and CPU."""
    headers = {"Authorization": f"Bearer {api_key}"}
    cpu, start = time.process_time(), time.perf_counter()
    bodies = (web_call_body(agent_id, first + n) for n in range(clients))
    results = await asyncio.gather(*(_client(session, headers, body) for body in bodies))
    return LoadReport(
        samples=[s for samples in results for s in samples],
        seconds=time.perf_counter() - start,
        driver_cpu_seconds=time.process_time() - cpu,
    )


async def drive(
    base_url: str, api_key: str, agent_id: str, *, clients: int = 200, first: int = 0
) -> LoadReport:
    """Run ``clients`` concurrent clients (create, replay, GET) against ``base_url``."""
    async with _session(base_url, clients) as session:
        return await _run(session, api_key, agent_id, clients, first)


@dataclass(frozen=True, slots=True)
class KindCost:
    """One request kind sent one at a time: the API's CPU and the latency, per request."""

    kind: str
    count: int
    api_cpu_ms: float
    p50_ms: float
    statuses: str


async def one_at_a_time(
    base_url: str, api_key: str, agent_id: str, api_cpu: Callable[[], float], *, count: int = 50
) -> list[KindCost]:
    """``count`` creates, then their replays, then their GETs, each sent alone (no queueing):
    what each kind costs the API (``api_cpu``: its CPU seconds so far) and takes."""
    headers = {"Authorization": f"Bearer {api_key}"}
    keyed = [
        ({**headers, "Idempotency-Key": str(uuid.uuid4())}, web_call_body(agent_id, 10**6 + n))
        for n in range(count)
    ]
    costs: list[KindCost] = []
    ids: list[str] = []
    async with _session(base_url, 1) as session:
        for kind in KINDS:
            before = api_cpu()
            if kind == "get":
                samples = [await _timed(session, kind, "GET", f"{CALLS}/{i}", headers) for i in ids]
            else:
                samples = [await _timed(session, kind, "POST", CALLS, h, b) for h, b in keyed]
            if kind == "create":
                ids = [s.call_id for s in samples if s.call_id]
            cpu_ms = (api_cpu() - before) * 1000 / max(1, len(samples))
            costs.append(_kind_cost(kind, samples, cpu_ms))
    return costs


def _kind_cost(kind: str, samples: list[Sample], cpu_ms: float) -> KindCost:
    counts = sorted(Counter(s.status for s in samples).items())
    median = statistics.median(s.seconds * 1000 for s in samples) if samples else 0.0
    statuses = ", ".join(f"{status}×{n}" for status, n in counts)
    return KindCost(kind, len(samples), cpu_ms, median, statuses)


async def _open_connections(session: aiohttp.ClientSession, n: int) -> None:
    """Open ``n`` keep-alive connections: ``n`` concurrent ``GET /healthz``."""
    answers = await asyncio.gather(*(_timed(session, "warm", "GET", HEALTH, {}) for _ in range(n)))
    if failed := [a for a in answers if a.status != 200]:
        raise RuntimeError(f"warm-up: {len(failed)} of {n} GET {HEALTH} failed: {failed[0]}")


# ------------------------------------------------------------------------ driver processes


@dataclass(frozen=True)
class Job:
    """One driver process's share of the clients."""

    base_url: str
    api_key: str
    agent_id: str
    clients: int
    first: int


@dataclass
class DriverResult:
    """What one driver process measured, with its start and end on the machine's monotonic
    clock (``time.monotonic``: CLOCK_MONOTONIC, one clock for every process)."""

    report: LoadReport
    started: float
    finished: float


def merge(results: Sequence[DriverResult]) -> LoadReport:
    """One report of drivers that ran together: every sample, the seconds from the first start
    to the last answer, the drivers' CPU summed."""
    return LoadReport(
        samples=[s for r in results for s in r.report.samples],
        seconds=max(r.finished for r in results) - min(r.started for r in results),
        driver_cpu_seconds=sum(r.report.driver_cpu_seconds for r in results),
    )


def _jobs(base_url: str, api_key: str, agent_id: str, clients: int, processes: int) -> list[Job]:
    shares = [clients // processes + (i < clients % processes) for i in range(processes)]
    firsts = [sum(shares[:i]) for i in range(processes)]
    return [
        Job(base_url, api_key, agent_id, n, first)
        for n, first in zip(shares, firsts, strict=True)
        if n
    ]


class _Driver:
    """One ``python -m convoi.devstack.load_driver`` process, driven over its pipes."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "convoi.devstack.load_driver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._send(json.dumps(asdict(job)))

    def _send(self, line: str) -> None:
        stdin = self._stdin()
        stdin.write(line.encode() + b"\n")
        stdin.flush()

    def _stdin(self) -> IO[bytes]:
        assert self._proc.stdin is not None  # stdin=PIPE
        return self._proc.stdin

    def _receive(self, what: str) -> str:
        assert self._proc.stdout is not None  # stdout=PIPE
        line = self._proc.stdout.readline()
        if not line:
            code = self._proc.wait(10)
            raise RuntimeError(f"driver process exited ({code}) before {what} (stderr above)")
        return line.decode()

    def wait_ready(self) -> None:
        """Return once its connections are open."""
        self._receive("it was ready")

    def go(self) -> None:
        """Start its clients."""
        self._send("go")

    def result(self) -> DriverResult:
        """Its measurement, once every client has its answers."""
        data = json.loads(self._receive("its result"))
        report = LoadReport(
            samples=[Sample(**s) for s in data["samples"]],
            seconds=data["finished"] - data["started"],
            driver_cpu_seconds=data["cpu"],
        )
        return DriverResult(report, data["started"], data["finished"])

    def stop(self) -> None:
        """Kill it if it is still running; reap it."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait(10)
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None:
                pipe.close()


class DriverProcesses:
    """``processes`` driver processes sharing ``clients`` clients (create, replay, GET against
    ``base_url``). On entry they are running with their connections open; :meth:`run` starts
    them all at one moment (once); on exit any still running is killed."""

    def __init__(
        self, base_url: str, api_key: str, agent_id: str, *, clients: int, processes: int
    ) -> None:
        self.jobs = _jobs(base_url, api_key, agent_id, clients, processes)
        self._drivers: list[_Driver] = []

    def __enter__(self) -> Self:
        try:
            for job in self.jobs:
                self._drivers.append(_Driver(job))
            for driver in self._drivers:
                driver.wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def run(self) -> LoadReport:
        """Start every driver's clients; their samples merged (:func:`merge`)."""
        for driver in self._drivers:
            driver.go()
        return merge([driver.result() for driver in self._drivers])

    def close(self) -> None:
        """Kill the drivers still running."""
        drivers, self._drivers = self._drivers, []
        for driver in drivers:
            driver.stop()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def drive_processes(
    base_url: str, api_key: str, agent_id: str, *, clients: int, processes: int
) -> LoadReport:
    """:func:`drive` split over ``processes`` driver processes (one Python client process
    cannot keep 200 clients busy on its own), started together once all have their connections
    open (:class:`DriverProcesses`); their samples merged."""
    with DriverProcesses(
        base_url, api_key, agent_id, clients=clients, processes=processes
    ) as drivers:
        return drivers.run()


# ------------------------------------------------------------------------ in a driver process


async def _serve(job: Job, stdin: IO[str], stdout: IO[str]) -> None:
    """Open the connections, say ``ready``, wait for ``go``, drive, write the result."""
    async with _session(job.base_url, job.clients) as session:
        await _open_connections(session, job.clients)
        stdout.write("ready\n")
        stdout.flush()
        if (await asyncio.to_thread(stdin.readline)).strip() != "go":
            raise RuntimeError("the load test went away before `go`")
        started = time.monotonic()
        report = await _run(session, job.api_key, job.agent_id, job.clients, job.first)
        finished = time.monotonic()
    result: dict[str, Any] = {
        "started": started,
        "finished": finished,
        "cpu": report.driver_cpu_seconds,
        "samples": [asdict(s) for s in report.samples],
    }
    stdout.write(json.dumps(result) + "\n")
    stdout.flush()


def main() -> int:
    """A driver process: its job is the first line on stdin (see the module doc)."""
    job = Job(**json.loads(sys.stdin.readline()))
    asyncio.run(_serve(job, sys.stdin, sys.stdout))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
