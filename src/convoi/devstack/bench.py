"""Latency and memory benchmark: N scripted web calls through the real stack, one table.

    python -m convoi.devstack.bench --calls 5 [--tts-ttfb-ms 0 --llm-ttft-ms 0 --stt-final-ms 0]

Starts livekit-server, the emulators (with optional injected provider latency) and one
``convoi-worker start``, places the calls one after another with the scripted caller, and prints
p50 / p95 / max of what the caller experienced (dispatch → agent joined, joined → greeting audio,
end of speech → first reply audio) plus the worker's memory (main + job processes, RSS).
Results are recorded in BENCHMARKS.md; targets live there, never in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import yaml

from convoi.devstack.caller import CallerScript, caller_token, run_caller
from convoi.devstack.demo import AGENT_ID, SCENARIO, UTTERANCES
from convoi.devstack.harness import EmulatorsProcess, WorkerProcess, dispatch_call
from convoi.devstack.livekit_server import LiveKitServer

__all__ = ["main"]


def _rss_mb(pid: int) -> float:
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs if p.is_running()) / 1e6
    except psutil.NoSuchProcess:
        return 0.0


def _row(name: str, values: list[float]) -> str:
    if not values:
        return f"| {name} | n/a | n/a | n/a | 0 |"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"| {name} | {statistics.median(ordered):.0f} | {p95:.0f} | {ordered[-1]:.0f} | {len(ordered)} |"


async def _calls(
    server: LiveKitServer,
    worker: WorkerProcess,
    emulators: EmulatorsProcess,
    scenario: dict,
    n: int,
) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"join": [], "greeting": [], "reply": [], "rss": []}
    assert worker.proc is not None
    for i in range(n):
        emulators.load_scenario(scenario)  # each call replays the script from its first line
        room = f"bench-{uuid.uuid4().hex[:8]}"
        spec = {
            "call_id": f"call_bench{uuid.uuid4().hex[:12]}",
            "type": "web",
            "agent_id": AGENT_ID,
        }
        t0 = time.time()
        await dispatch_call(
            server.url,
            server.api_key,
            server.api_secret,
            agent_name=worker.agent_name,
            room=room,
            metadata=spec,
        )
        token = caller_token(server.api_key, server.api_secret, room, "bench-caller")
        report = await run_caller(
            server.url, token, CallerScript(utterances=UTTERANCES, max_wait_s=90)
        )
        if not report.ok:
            print(f"call {i + 1}: {report.errors}", file=sys.stderr)
        if report.agent_joined is not None:
            out["join"].append((report.agent_joined.wall - t0) * 1000)
        if report.greeting_latency_ms is not None:
            out["greeting"].append(report.greeting_latency_ms)
        out["reply"] += [v for v in report.reply_latencies_ms if v is not None]
        out["rss"].append(_rss_mb(worker.proc.pid))
        print(f"call {i + 1}/{n} done", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table (Markdown)."""
    parser = argparse.ArgumentParser(prog="convoi-bench", description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--stt-final-ms", type=int, default=0, help="injected Deepgram final delay")
    parser.add_argument(
        "--llm-ttft-ms", type=int, default=0, help="injected OpenAI time to first token"
    )
    parser.add_argument(
        "--tts-ttfb-ms", type=int, default=0, help="injected ElevenLabs time to first byte"
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="convoi-bench-"))
    scenario = yaml.safe_load(SCENARIO.read_text())
    scenario["latency"] = {
        "stt_final_ms": args.stt_final_ms,
        "llm_ttft_ms": args.llm_ttft_ms,
        "tts_ttfb_ms": args.tts_ttfb_ms,
    }
    started: list = []
    try:
        server = LiveKitServer(workdir=work / "livekit").start()
        started.append(server)
        emulators = EmulatorsProcess(work / "emulators.log").start_and_wait()
        started.append(emulators)
        emulators.load_scenario(scenario)
        env = {
            "LIVEKIT_URL": server.url,
            "LIVEKIT_API_KEY": server.api_key,
            "LIVEKIT_API_SECRET": server.api_secret,
            "CONVOI_NUM_IDLE_PROCESSES": "1",
            "CONVOI_LOAD_THRESHOLD": "inf",
            "CONVOI_OUTBOX_PATH": str(work / "outbox.sqlite3"),
            **emulators.provider_env(),
        }
        worker = WorkerProcess(
            work / "worker.log", env, agent_name=f"convoi-bench-{uuid.uuid4().hex[:6]}"
        )
        worker.start_and_wait()
        started.append(worker)
        idle_rss = _rss_mb(worker.proc.pid) if worker.proc else 0.0
        results = asyncio.run(_calls(server, worker, emulators, scenario, args.calls))
    finally:
        for proc in reversed(started):
            proc.stop()
    injected = f"injected provider latency: STT final {args.stt_final_ms} ms, LLM TTFT {args.llm_ttft_ms} ms, TTS TTFB {args.tts_ttfb_ms} ms"
    print(f"\n{args.calls} web calls, 2 caller turns each; {injected}\n")
    print("| measure (ms) | p50 | p95 | max | n |")
    print("| --- | --- | --- | --- | --- |")
    print(_row("dispatch → agent joined", results["join"]))
    print(_row("agent joined → first greeting audio", results["greeting"]))
    print(_row("end of caller speech → first reply audio", results["reply"]))
    print(
        f"\nworker RSS (main + job processes): idle {idle_rss:.0f} MB, after the calls {max(results['rss'] or [0]):.0f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
