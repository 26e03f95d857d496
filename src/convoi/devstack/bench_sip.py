"""Latency of outbound calls over the real SIP bridge: calls to a SIPp phone, one table per kind.

    python -m convoi.devstack.bench_sip [--calls 10] [--squad-calls 10] [--stock-calls 10]

Starts its own SIP stack (Redis, livekit-server with that Redis, livekit-sip) on ports clear of the
test suite's and the e2e tests' (livekit-server 7920-7922, livekit-sip 5072 with RTP 20200-20300,
health 7925), the provider emulators (instant; the callee says nothing, so only the greeting is
synthesised), ``convoi-worker start`` registered as ``convoi-bench-sip`` and, for comparison, a
stock livekit-agents outbound caller (:mod:`convoi.devstack.bench_sip_stock`, same plugins)
registered as ``convoi-bench-sip-stock``. Both shipped phone numbers point at the benchmark's SIPp
callee (127.0.0.1:5085, RTP 16100) in a copy of ``agents_config``.

Calls run one after another; sales-agent calls alternate between convoi and the stock agent, then
come the workforce calls (the customer-care squad on the UAE line, a trunk with a password). Each
call: wait until the worker has a warm idle job process again, dispatch straight to the worker (an
``outbound_phone`` CallSpec; no control plane), SIPp answers at once and stays, wait until SIPp has
heard the first speech frame, remove the phone participant through the LiveKit API (livekit-sip
sends BYE), then wait for SIPp to end, the worker to log the call's end and the job process to exit
(a job's teardown and the pool's next warm-up never overlap the next call of either worker).

Every time comes from where it happens, on one clock: SIPp's message trace (INVITE and ACK
received), tcpdump's capture of the RTP sent to SIPp (arrival of the first speech frame,
:meth:`~convoi.devstack.sipp.Recording.first_audio_at`), the worker's JSON log records (the
dialer's ``dialing …`` record, written right before ``CreateSIPParticipant`` is sent, and ``call
answered``, when it returned) and its outbox (``created_at`` of the ``ringing`` status event,
committed before the dial starts). Results go to BENCHMARKS.md; targets live there, never in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import psutil
import yaml
from livekit import api

from convoi.callspec import resolve_call
from convoi.definitions.loader import load_definitions
from convoi.definitions.models import Definitions
from convoi.devstack import install
from convoi.devstack.bench_sip_stock import EVENTS_ENV
from convoi.devstack.harness import EmulatorsProcess, ManagedProcess, WorkerProcess, dispatch_call
from convoi.devstack.sip_stack import SipPorts, SipStack
from convoi.devstack.sipp import Behaviour, SippCallee
from convoi.telephony import phone_identity

__all__ = ["BENCH_PORTS", "main"]

BENCH_PORTS: Final[SipPorts] = SipPorts(
    livekit=7920, rtc_tcp=7921, rtc_udp=7922, sip=5072, rtp=(20200, 20300), health=7925, redis=None
)
"""The benchmark's SIP stack (clear of the test stack's 7900-7905/5070 and the e2e 7880-7882)."""
SIPP_PORT: Final = 5085
"""The benchmark's SIPp callee (the e2e tests' callee is on 5080)."""
MEDIA_PORT: Final = 16100
AGENT_NAME: Final = "convoi-bench-sip"
STOCK_AGENT: Final = "convoi-bench-sip-stock"
SALES: Final = "agt_0a9b8c7d6e5f40312a3b4c5d6e7f8a9b"
US_LINE: Final = "phn_c38155f043624745a66d2e28c185xxxx"
SQUAD: Final = "sqd_3fa85f6457174562b3fc2c963f66afa6"
UAE_LINE: Final = "phn_9b2c4e6a8d0f42b1a3c5e7f9b1d3f5a7"
CUSTOMER: Final = "+15550000009"
SCENARIO: Final[dict[str, Any]] = {"caller": [], "default_reply": "Okay."}
"""The callee says nothing; only the greeting is synthesised."""
TIMEOUT: Final = 60.0
"""Bound on every wait of a call."""

MEASURES: Final[tuple[tuple[str, str], ...]] = (
    ("greeting", "SIP answer (ACK at SIPp) → first greeting audio at SIPp"),
    ("dial_invite", "CreateSIPParticipant sent → INVITE at SIPp"),
    ("invite_ack", "INVITE at SIPp → ACK at SIPp (SIPp answers at once)"),
    ("ack_answered", "ACK at SIPp → CreateSIPParticipant returned"),
    ("dial_answered", "CreateSIPParticipant sent → returned (answered)"),
    ("ringing_answered", "`ringing` committed → answered (worker)"),
    ("dispatch_invite", "dispatch → INVITE at SIPp"),
)


def _epoch(record: Mapping[str, Any]) -> float:
    """Epoch seconds of a worker JSON log record (``timestamp`` is ISO 8601 with offset)."""
    return datetime.fromisoformat(str(record["timestamp"])).timestamp()


def _bench_config(source: Path, dest: Path) -> Path:
    """A copy of the definitions with every phone number's trunk at the benchmark's SIPp."""
    shutil.copytree(source, dest)
    path = dest / "phone_numbers.yaml"
    data = yaml.safe_load(path.read_text())
    for number in data["phone_numbers"]:
        number["sip"]["address"] = f"127.0.0.1:{SIPP_PORT}"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return dest


def _first_audio_at(phone: SippCallee, timeout: float) -> float:
    """Epoch time of the first speech frame SIPp received (polls the growing capture file)."""
    deadline = time.monotonic() + timeout
    while (at := phone.recording().first_audio_at()) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"SIPp heard no speech within {timeout:g}s\n{phone.summary()}")
        time.sleep(0.05)  # the capture file grows as RTP arrives: nothing else to wait on
    return at


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout:g}s")
        time.sleep(0.05)  # polling a log file or a database


# --------------------------------------------------------------------------- the two workers


def _callspec(call_id: str, agent_id: str, phone_number_id: str) -> dict[str, Any]:
    """The CallSpec convoi's worker is dispatched with."""
    return {
        "call_id": call_id,
        "type": "outbound_phone",
        "agent_id": agent_id,
        "customer": {"number": CUSTOMER, "name": "Ahmed"},
        "phone_number_id": phone_number_id,
        "metadata": {"campaign": "bench-sip"},
    }


class _Side:
    """One worker under test: how to dispatch to it and where it tells what happened."""

    label: str
    worker: WorkerProcess
    jobs = 0

    def metadata(self, call_id: str, agent_id: str, phone_number_id: str) -> dict[str, Any]:
        raise NotImplementedError

    def times(self, call_id: str) -> dict[str, float]:
        """Epoch times the worker recorded: ``dialing``, ``answered`` (and ``ringing``)."""
        raise NotImplementedError

    def wait_for_end(self, call_id: str) -> None:
        raise NotImplementedError

    def job_pid(self, call_id: str) -> int | None:
        """The pid of the job process that ran the call."""
        raise NotImplementedError

    def wait_for_job_exit(self, call_id: str) -> None:
        """Until the call's job process has exited (its teardown is not the next call's load)."""
        pid = self.job_pid(call_id)
        if pid is not None:
            _wait(lambda: not _alive(pid), TIMEOUT, f"exit of job process {pid}")

    def wait_until_idle(self) -> None:
        """Until a warm job process waits for the next call (each job takes the idle one and the
        pool warms a new one: one ``process initialized`` per job, plus the first)."""
        _wait(
            lambda: len(self.worker.find("process initialized")) > self.jobs,
            TIMEOUT,
            f"idle job process of {self.label}",
        )
        self.jobs += 1


@dataclass
class _Convoi(_Side):
    worker: WorkerProcess
    outbox: Path
    label: str = "convoi"

    def metadata(self, call_id: str, agent_id: str, phone_number_id: str) -> dict[str, Any]:
        return _callspec(call_id, agent_id, phone_number_id)

    def times(self, call_id: str) -> dict[str, float]:
        out = {"answered": _epoch(self.worker.find("call answered", call_id=call_id)[0])}
        dialing = self.worker.find("dialing ", call_id=call_id)
        if dialing:
            out["dialing"] = _epoch(dialing[0])
        with sqlite3.connect(f"file:{self.outbox}?mode=ro", uri=True, timeout=10) as db:
            rows = db.execute(
                "SELECT body FROM outbox WHERE call_id = ? AND type = 'call.status'", (call_id,)
            ).fetchall()
        for (body,) in rows:
            event = json.loads(body)
            if event.get("status") == "ringing":
                out["ringing"] = float(event["created_at"])
        return out

    def wait_for_end(self, call_id: str) -> None:
        self.worker.wait_for_record("call ended", TIMEOUT, call_id=call_id)

    def job_pid(self, call_id: str) -> int | None:
        found = self.worker.find("call answered", call_id=call_id)
        return int(found[0]["pid"]) if found and "pid" in found[0] else None


@dataclass
class _Stock(_Side):
    worker: WorkerProcess
    events: Path
    definitions: Definitions
    """The benchmark's definitions: the stock agent gets what convoi resolves for the same call."""
    label: str = "stock livekit-agents"

    def metadata(self, call_id: str, agent_id: str, phone_number_id: str) -> dict[str, Any]:
        call = resolve_call(_callspec(call_id, agent_id, phone_number_id), self.definitions)
        assert call.phone_number is not None
        return {
            "call_id": call_id,
            "agent_id": call.start_agent.agent.id,
            "to": CUSTOMER,
            "from": call.phone_number.number,
            "trunk_address": call.phone_number.sip.address,
            "greeting": call.start_agent.greeting or "",
        }

    def _events(self, call_id: str) -> list[dict[str, Any]]:
        try:
            lines = self.events.read_text().splitlines()
        except FileNotFoundError:
            return []
        found = [json.loads(line) for line in lines if line.endswith("}")]
        return [e for e in found if e["call_id"] == call_id]

    def times(self, call_id: str) -> dict[str, float]:
        return {e["event"]: float(e["at"]) for e in self._events(call_id)}

    def wait_for_end(self, call_id: str) -> None:
        _wait(lambda: "ended" in self.times(call_id), TIMEOUT, f"end of {call_id}")

    def job_pid(self, call_id: str) -> int | None:
        events = self._events(call_id)
        return int(events[0]["pid"]) if events else None


# --------------------------------------------------------------------------- calls


@dataclass
class _Run:
    """Measurements (ms) of one kind of call."""

    label: str
    values: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k, _ in MEASURES})
    calls: int = 0
    failures: int = 0


@dataclass
class _Bench:
    stack: SipStack
    emulators: EmulatorsProcess
    work: Path

    async def call(
        self, side: _Side, name: str, agent_id: str, phone_number_id: str
    ) -> dict[str, float]:
        """One call (see the module docstring); its measures in ms."""
        await asyncio.to_thread(side.wait_until_idle)
        self.emulators.load_scenario(SCENARIO)
        call_id = f"call_bench{uuid.uuid4().hex[:16]}"
        room = f"bench-sip-{uuid.uuid4().hex[:8]}"
        with SippCallee(
            Behaviour.answer_and_stay(),
            workdir=self.work / "calls" / name,
            sip_port=SIPP_PORT,
            media_port=MEDIA_PORT,
        ) as phone:
            dispatched = time.time()
            await dispatch_call(
                self.stack.url,
                self.stack.api_key,
                self.stack.api_secret,
                agent_name=side.worker.agent_name,
                room=room,
                metadata=side.metadata(call_id, agent_id, phone_number_id),
            )
            invite = await asyncio.to_thread(phone.wait_for_call, TIMEOUT)
            ack = await asyncio.to_thread(phone.wait_for_answer, TIMEOUT)
            heard = await asyncio.to_thread(_first_audio_at, phone, TIMEOUT)
            async with api.LiveKitAPI(
                self.stack.http_url, self.stack.api_key, self.stack.api_secret
            ) as lk:
                await lk.room.remove_participant(
                    api.RoomParticipantIdentity(room=room, identity=phone_identity(CUSTOMER))
                )
            await asyncio.to_thread(phone.wait_for_hangup, TIMEOUT)
            await asyncio.to_thread(side.wait_for_end, call_id)
            await asyncio.to_thread(phone.wait_for_exit, TIMEOUT)
        await asyncio.to_thread(side.wait_for_job_exit, call_id)
        t = side.times(call_id)
        out = {
            "greeting": heard - ack.at,
            "invite_ack": ack.at - invite.at,
            "dispatch_invite": invite.at - dispatched,
        }
        if "answered" in t:
            out["ack_answered"] = t["answered"] - ack.at
        if "dialing" in t:
            out["dial_invite"] = invite.at - t["dialing"]
        if "dialing" in t and "answered" in t:
            out["dial_answered"] = t["answered"] - t["dialing"]
        if "ringing" in t and "answered" in t:
            out["ringing_answered"] = t["answered"] - t["ringing"]
        return {k: v * 1000 for k, v in out.items()}

    async def one(
        self, run: _Run, side: _Side, i: int, n: int, agent_id: str, phone_number_id: str
    ) -> None:
        slug = "".join(c if c.isalnum() else "-" for c in run.label)
        run.calls += 1
        try:
            got = await self.call(side, f"{slug}-{i:02d}", agent_id, phone_number_id)
        except Exception as exc:
            run.failures += 1
            print(f"{run.label} call {i}/{n} failed: {exc}", file=sys.stderr, flush=True)
            return
        for key, value in got.items():
            run.values[key].append(value)
        shown = ", ".join(f"{k} {v:.0f}" for k, v in got.items())
        print(f"{run.label} call {i}/{n} (ms): {shown}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the table


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _row(name: str, values: list[float]) -> str:
    if not values:
        return f"| {name} | n/a | n/a | n/a | n/a | 0 |"
    ordered = sorted(values)
    p50, p95 = statistics.median(ordered), _percentile(ordered, 0.95)
    return f"| {name} | {p50:.0f} | {p95:.0f} | {ordered[0]:.0f} | {ordered[-1]:.0f} | {len(ordered)} |"


def _table(run: _Run) -> str:
    failed = f", {run.failures} failed" if run.failures else ""
    lines = [
        f"\n{run.label}: {run.calls} outbound calls over livekit-sip to SIPp{failed}\n",
        "| measure (ms) | p50 | p95 | min | max | n |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += [_row(name, run.values[key]) for key, name in MEASURES if run.values[key]]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the tables (Markdown); 1 when a call failed."""
    parser = argparse.ArgumentParser(prog="convoi-bench-sip", description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=10, help="sales-agent calls (convoi)")
    parser.add_argument("--squad-calls", type=int, default=10, help="workforce calls (convoi)")
    parser.add_argument(
        "--stock-calls", type=int, default=10, help="sales-agent calls (stock livekit-agents)"
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=install.repo_root() / "agents_config",
        help="definitions to copy (their phone numbers are pointed at the benchmark's SIPp)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, pcaps)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="The HMAC key is")  # the devstack's short dev secret
    work = Path(tempfile.mkdtemp(prefix="convoi-bench-sip-"))
    print(f"work folder: {work}", file=sys.stderr, flush=True)
    load_before = os.getloadavg()[0]
    config = _bench_config(args.config, work / "agents_config")
    stack = SipStack(BENCH_PORTS, workdir=work / "sip-stack")
    started: list[SipStack | ManagedProcess] = []
    sales, stock, squad = _Run("sales agent"), _Run("stock livekit-agents"), _Run("workforce")
    try:
        stack.start()
        started.append(stack)
        emulators = EmulatorsProcess(work / "emulators.log").start_and_wait()
        started.append(emulators)
        emulators.load_scenario(SCENARIO)
        env = {
            **stack.worker_env(),
            "CONVOI_CONFIG_DIR": str(config),
            "CONVOI_NUM_IDLE_PROCESSES": "1",
            "CONVOI_LOAD_THRESHOLD": "inf",
            "CONVOI_OUTBOX_PATH": str(work / "outbox.sqlite3"),
            "CONVOI_TRUNK_UAE_PASSWORD": "bench",  # SIPp does not challenge
            **emulators.provider_env(),
        }
        convoi = _Convoi(
            WorkerProcess(work / "worker.log", env, agent_name=AGENT_NAME), work / "outbox.sqlite3"
        )
        started.append(convoi.worker)
        convoi.worker.start_and_wait()
        sides: list[tuple[_Run, _Side]] = [(sales, convoi)]
        if args.stock_calls:
            events = work / "stock-events.jsonl"
            stock_worker = WorkerProcess(
                work / "stock-worker.log", {**env, EVENTS_ENV: str(events)}, agent_name=STOCK_AGENT
            )
            stock_worker.argv = [sys.executable, "-m", "convoi.devstack.bench_sip_stock", "start"]
            started.append(stock_worker)
            stock_worker.start_and_wait()
            defs = load_definitions(config).definitions
            sides.append((stock, _Stock(stock_worker, events, defs)))
        print("stack, emulators and workers up", file=sys.stderr, flush=True)
        bench = _Bench(stack, emulators, work)

        async def calls() -> None:
            counts = {sales.label: args.calls, stock.label: args.stock_calls}
            for i in range(1, max(counts.values()) + 1):  # alternate: same machine load for both
                for run, side in sides:
                    if i <= counts[run.label]:
                        await bench.one(run, side, i, counts[run.label], SALES, US_LINE)
            for i in range(1, args.squad_calls + 1):
                await bench.one(squad, convoi, i, args.squad_calls, SQUAD, UAE_LINE)

        asyncio.run(calls())
    finally:
        for proc in reversed(started):
            proc.stop()
        failed = any(run.failures for run in (sales, stock, squad))
        if args.keep or failed:
            print(f"logs, traces and captures kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    cores = os.cpu_count()
    print(
        f"\n{cores} cores; 1-minute load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    for run in (sales, stock, squad):
        if run.calls:
            print(_table(run))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
