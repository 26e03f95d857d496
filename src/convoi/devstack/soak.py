"""Soak: the benchmark's capacity in concurrent web calls for minutes, then a leak check.

    python -m convoi.devstack.soak --concurrency 4 --minutes 10

Starts its own livekit-server (ports 7980-7982 by default, so it never meets the tests' servers),
the provider emulators, the reference event receiver and one ``convoi-worker start``, then keeps
``--concurrency`` scripted web calls running back to back (greeting, two caller turns, the caller
hangs up) for ``--minutes``. Every ``--sample-seconds`` it records the worker's memory (PSS of the
main process and of the whole process tree) and how many job processes and rooms exist. When the
time is up it lets the running calls finish and checks what a long-running worker must hold:

- memory: the worker's main process and its whole tree grew less than ``--max-growth`` (10 %)
  between the end of the warm-up and the end of the run (medians over a window, same load);
- processes: once idle, the worker keeps no more job processes than its idle pool;
- rooms: no room is left on the server;
- reports: every call placed has exactly one ``call.ended`` at the receiver;
- calls: all of them completed (``--max-failed`` allows some, on a machine too busy to serve all).

It prints a Markdown table (recorded in BENCHMARKS.md) and exits 1 when a check fails. This is a
command, never part of CI's default run: it takes as long as it is told to.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml
from livekit import api

from convoi.devstack.caller import CallerScript, caller_token, run_caller
from convoi.devstack.demo import AGENT_ID, SCENARIO, UTTERANCES
from convoi.devstack.harness import EmulatorsProcess, ReceiverProcess, WorkerProcess, dispatch_call
from convoi.devstack.livekit_server import LiveKitServer, ServerConfig

__all__ = ["Sample", "SoakResult", "growth", "main", "unsuccessful", "verdict", "window_median"]

IDLE_PROCESSES = 2
"""The worker's idle pool during the soak (``CONVOI_NUM_IDLE_PROCESSES``)."""


@dataclass(frozen=True)
class Sample:
    """One look at the worker: seconds since the soak began, memory (MB), processes, rooms."""

    at_s: float
    main_pss_mb: float
    tree_pss_mb: float
    job_processes: int
    rooms: int


@dataclass
class SoakResult:
    """What a soak run saw."""

    concurrency: int
    minutes: float
    warmup_s: float
    samples: list[Sample] = field(default_factory=list)
    placed: int = 0
    caller_errors: int = 0
    ended: Counter[str] = field(default_factory=Counter)
    missing_reports: list[str] = field(default_factory=list)
    duplicate_reports: list[str] = field(default_factory=list)
    idle_job_processes: int | None = None
    leftover_rooms: list[str] = field(default_factory=list)


def window_median(samples: list[Sample], start_s: float, end_s: float, what: str) -> float | None:
    """Median of ``what`` (a Sample field) over samples taken in ``[start_s, end_s]``."""
    values = [getattr(s, what) for s in samples if start_s <= s.at_s <= end_s]
    return statistics.median(values) if values else None


def growth(before: float | None, after: float | None) -> float | None:
    """Relative growth from ``before`` to ``after`` (0.05 is 5 %); None without both."""
    if before is None or after is None or before <= 0:
        return None
    return after / before - 1.0


def memory_growth(result: SoakResult, what: str, window_s: float) -> float | None:
    """Growth of ``what`` from the window after warm-up to the window ending the run."""
    loaded = [s for s in result.samples if s.at_s >= result.warmup_s]
    if not loaded:
        return None
    start, end = result.warmup_s, loaded[-1].at_s
    first = window_median(loaded, start, min(end, start + window_s), what)
    last = window_median(loaded, max(start, end - window_s), end, what)
    return growth(first, last)


def unsuccessful(result: SoakResult) -> int:
    """Calls that did not end ``completed`` (by their ``call.ended``)."""
    return sum(n for outcome, n in result.ended.items() if not outcome.startswith("completed "))


def verdict(
    result: SoakResult, *, max_growth: float, window_s: float, max_failed: int = 0
) -> list[str]:
    """The checks that failed (empty: the soak passed)."""
    failed: list[str] = []
    if unsuccessful(result) > max_failed:
        failed.append(f"{unsuccessful(result)} calls did not complete (allowed {max_failed})")
    for what, label in (("main_pss_mb", "main process"), ("tree_pss_mb", "process tree")):
        g = memory_growth(result, what, window_s)
        if g is None:
            failed.append(f"{label}: not enough samples after the warm-up to measure growth")
        elif g >= max_growth:
            failed.append(f"{label} memory grew {g:.1%} (limit {max_growth:.0%})")
    if result.idle_job_processes is None or result.idle_job_processes > IDLE_PROCESSES:
        failed.append(
            f"{result.idle_job_processes} job processes once idle (pool {IDLE_PROCESSES})"
        )
    if result.leftover_rooms:
        failed.append(f"{len(result.leftover_rooms)} rooms left: {result.leftover_rooms[:5]}")
    if result.missing_reports:
        failed.append(f"{len(result.missing_reports)} calls without call.ended")
    if result.duplicate_reports:
        failed.append(f"{len(result.duplicate_reports)} calls with more than one call.ended")
    if result.placed == 0:
        failed.append("no call was placed")
    return failed


def render(result: SoakResult, *, max_growth: float, window_s: float, max_failed: int = 0) -> str:
    """The Markdown table of a soak run."""

    def pct(what: str) -> str:
        g = memory_growth(result, what, window_s)
        return "n/a" if g is None else f"{g:+.1%}"

    def mb(what: str, at_end: bool) -> str:
        loaded = [s for s in result.samples if s.at_s >= result.warmup_s]
        if not loaded:
            return "n/a"
        start, end = result.warmup_s, loaded[-1].at_s
        lo, hi = (max(start, end - window_s), end) if at_end else (start, start + window_s)
        value = window_median(loaded, lo, hi, what)
        return "n/a" if value is None else f"{value:.0f}"

    ended = ", ".join(f"{k} {v}" for k, v in sorted(result.ended.items())) or "none"
    lines = [
        f"{result.concurrency} concurrent web calls for {result.minutes:g} min "
        f"(warm-up {result.warmup_s:.0f} s, memory windows {window_s:.0f} s)",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| calls placed | {result.placed} |",
        f"| calls ended (status / reason) | {ended} |",
        f"| caller-side errors | {result.caller_errors} |",
        f"| calls without / with several call.ended | {len(result.missing_reports)} / "
        f"{len(result.duplicate_reports)} |",
        f"| main process PSS after warm-up → end (MB) | {mb('main_pss_mb', False)} → "
        f"{mb('main_pss_mb', True)} ({pct('main_pss_mb')}) |",
        f"| worker tree PSS after warm-up → end (MB) | {mb('tree_pss_mb', False)} → "
        f"{mb('tree_pss_mb', True)} ({pct('tree_pss_mb')}) |",
        f"| job processes once idle (pool {IDLE_PROCESSES}) | {result.idle_job_processes} |",
        f"| rooms left on the server | {len(result.leftover_rooms)} |",
    ]
    failed = verdict(result, max_growth=max_growth, window_s=window_s, max_failed=max_failed)
    lines += ["", "verdict: " + ("PASS" if not failed else "FAIL: " + "; ".join(failed))]
    return "\n".join(lines)


# -- the run (I/O) ---------------------------------------------------------------------------


def _pss_mb(proc: psutil.Process) -> float:
    try:
        info = proc.memory_full_info()
        return float(getattr(info, "pss", info.rss)) / 1e6
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0.0


def _look(pid: int) -> tuple[float, float, int]:
    """The worker's main PSS, tree PSS and its number of job processes (children)."""
    try:
        main = psutil.Process(pid)
        children = main.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0, 0.0, 0
    main_mb = _pss_mb(main)
    jobs = 0  # job processes are the forkserver's children; the main's own are helpers
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            jobs += child.ppid() != pid
    return main_mb, main_mb + sum(_pss_mb(c) for c in children), jobs


async def _rooms(lk: api.LiveKitAPI) -> list[str]:
    return [r.name for r in (await lk.room.list_rooms(api.ListRoomsRequest())).rooms]


@dataclass
class _Run:
    server: LiveKitServer
    worker: WorkerProcess
    receiver: ReceiverProcess
    result: SoakResult
    deadline: float
    began: float
    call_ids: list[str] = field(default_factory=list)

    async def lane(self, n: int) -> None:
        """Place calls one after another until the deadline."""
        while time.monotonic() < self.deadline:
            call_id = f"call_soak{uuid.uuid4().hex[:12]}"
            room = f"soak-{uuid.uuid4().hex[:8]}"
            spec = {"call_id": call_id, "type": "web", "agent_id": AGENT_ID}
            self.call_ids.append(call_id)
            self.result.placed += 1
            s = self.server
            await dispatch_call(
                s.url, s.api_key, s.api_secret, agent_name=self.worker.agent_name, room=room,
                metadata=spec,
            )  # fmt: skip
            token = caller_token(s.api_key, s.api_secret, room, f"soak-caller-{n}")
            report = await run_caller(
                s.url, token, CallerScript(utterances=UTTERANCES, max_wait_s=90)
            )
            if not report.ok:
                self.result.caller_errors += 1
                print(f"lane {n}: call {call_id}: {report.errors}", file=sys.stderr)

    async def sampler(self, lk: api.LiveKitAPI, every_s: float, stop: asyncio.Event) -> None:
        """Record a Sample every ``every_s`` until ``stop`` is set."""
        assert self.worker.proc is not None
        while not stop.is_set():
            main_mb, tree_mb, jobs = await asyncio.to_thread(_look, self.worker.proc.pid)
            rooms = len(await _rooms(lk))
            at = time.monotonic() - self.began
            self.result.samples.append(Sample(at, main_mb, tree_mb, jobs, rooms))
            print(
                f"[{at:6.0f} s] placed {self.result.placed}, main {main_mb:.0f} MB, "
                f"tree {tree_mb:.0f} MB, {jobs} job processes, {rooms} rooms",
                file=sys.stderr,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)

    async def settle(self, lk: api.LiveKitAPI, timeout_s: float) -> None:
        """After the last call: wait for reports, the idle pool and empty rooms; record them."""
        assert self.worker.proc is not None
        give_up = time.monotonic() + timeout_s
        while True:
            rooms = await _rooms(lk)
            _, _, jobs = await asyncio.to_thread(_look, self.worker.proc.pid)
            ended = {cid: await asyncio.to_thread(self._ended, cid) for cid in self.call_ids}
            done = all(len(v) >= 1 for v in ended.values())
            if (not rooms and jobs <= IDLE_PROCESSES and done) or time.monotonic() > give_up:
                break
            await asyncio.sleep(2.0)  # polling external state, not synchronising our own tasks
        r = self.result
        r.leftover_rooms, r.idle_job_processes = rooms, jobs
        for cid, events in ended.items():
            if not events:
                r.missing_reports.append(cid)
            elif len(events) > 1:
                r.duplicate_reports.append(cid)
            if events:
                r.ended[f"{events[0].get('status')} / {events[0].get('ended_reason')}"] += 1

    def _ended(self, call_id: str) -> list[dict]:
        try:
            events = self.receiver.events(call_id)
        except Exception:
            return []
        return [e.get("event", e) for e in events if e.get("type") == "call.ended"]


async def _soak(run: _Run, concurrency: int, sample_s: float) -> None:
    s = run.server
    async with api.LiveKitAPI(s.http_url, s.api_key, s.api_secret) as lk:
        stop = asyncio.Event()
        sampler = asyncio.create_task(run.sampler(lk, sample_s, stop))
        await asyncio.gather(*(run.lane(n) for n in range(concurrency)))
        print("soak time is up; waiting for reports, idle pool and empty rooms", file=sys.stderr)
        await run.settle(lk, timeout_s=180.0)
        stop.set()
        await sampler


def _worker_env(server: LiveKitServer, emulators: EmulatorsProcess, receiver: ReceiverProcess, work: Path) -> dict[str, str]:  # fmt: skip
    return {
        "LIVEKIT_URL": server.url,
        "LIVEKIT_API_KEY": server.api_key,
        "LIVEKIT_API_SECRET": server.api_secret,
        "CONVOI_NUM_IDLE_PROCESSES": str(IDLE_PROCESSES),
        "CONVOI_LOAD_THRESHOLD": "inf",
        "CONVOI_OUTBOX_PATH": str(work / "outbox.sqlite3"),
        **emulators.provider_env(),
        **receiver.worker_env(),
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="convoi-soak", description=__doc__.split("\n")[0])
    p.add_argument("--concurrency", type=int, default=4, help="simultaneous calls (default 4)")
    p.add_argument("--minutes", type=float, default=10.0, help="how long calls are placed")
    p.add_argument("--warmup-minutes", type=float, default=1.0, help="before the memory baseline")
    p.add_argument("--window-minutes", type=float, default=2.0, help="memory median windows")
    p.add_argument("--sample-seconds", type=float, default=10.0)
    p.add_argument("--max-growth", type=float, default=0.10, help="memory growth limit (0.10)")
    p.add_argument("--max-failed", type=int, default=0, help="calls allowed not to complete")
    p.add_argument("--port", type=int, default=7980, help="livekit-server port (+1, +2 for RTC)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the soak, print the table, exit 1 when a check failed."""
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop what was started, then exit
    work = Path(tempfile.mkdtemp(prefix="convoi-soak-"))
    print(f"soak: logs in {work}", file=sys.stderr)
    result = SoakResult(args.concurrency, args.minutes, args.warmup_minutes * 60)
    config = ServerConfig(port=args.port, rtc_tcp_port=args.port + 1, rtc_udp_port=args.port + 2)
    started: list = []
    try:
        server = LiveKitServer(config, workdir=work / "livekit", reuse=False).start()
        started.append(server)
        emulators = EmulatorsProcess(work / "emulators.log").start_and_wait()
        started.append(emulators)
        emulators.load_scenario(yaml.safe_load(SCENARIO.read_text()))
        receiver = ReceiverProcess(
            work / "receiver.log", work / "receiver.sqlite3", uuid.uuid4().hex
        )
        receiver.start_and_wait()
        started.append(receiver)
        worker = WorkerProcess(
            work / "worker.log",
            _worker_env(server, emulators, receiver, work),
            agent_name=f"convoi-soak-{uuid.uuid4().hex[:6]}",
        )
        worker.start_and_wait()
        started.append(worker)
        began = time.monotonic()
        run = _Run(server, worker, receiver, result, began + args.minutes * 60, began)
        asyncio.run(_soak(run, args.concurrency, args.sample_seconds))
    finally:
        for proc in reversed(started):
            proc.stop()
    window_s = args.window_minutes * 60
    limits = {"max_growth": args.max_growth, "window_s": window_s, "max_failed": args.max_failed}
    print(render(result, **limits))
    return 1 if verdict(result, **limits) else 0


if __name__ == "__main__":
    sys.exit(main())
