"""The local end-to-end demo call (README command 1).

Brings up the devstack (a real livekit-server, the provider emulators), starts ``convoi-worker
start``, dispatches a web call with a CallSpec, joins it as a scripted caller that speaks real
audio, then prints the conversation and a timing table, and tears everything down.

With ``OPENAI_API_KEY``, ``DEEPGRAM_API_KEY`` and ``ELEVEN_API_KEY`` all set (and
``--providers real`` or the default ``auto``), the same worker talks to the real providers instead
of the emulators; the caller's lines are still spoken by espeak-ng.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

from convoi.devstack.caller import CallerReport, CallerScript, caller_token, run_caller
from convoi.devstack.harness import EmulatorsProcess, ManagedProcess, WorkerProcess, dispatch_call
from convoi.devstack.livekit_server import LiveKitServer
from convoi.reporting.events import CallEvent
from convoi.reporting.outbox import Outbox

__all__ = ["main", "run_demo", "worker_env"]

SCENARIO = Path(__file__).parent / "scenarios" / "demo_web.yaml"
AGENT_ID = "agt_b88d642dd68747f28305c428b209xxxx"
UTTERANCES = ["Hi, I have a question about my bill.", "Thanks, that's all."]
PROVIDER_KEYS = ("OPENAI_API_KEY", "DEEPGRAM_API_KEY", "ELEVEN_API_KEY")


def _say(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def _ms(a: Any, b: Any) -> str:
    if a is None or b is None:
        return "n/a"
    return (
        f"{(b.wall - a.wall) * 1000:,.0f} ms" if hasattr(a, "wall") else f"{(b - a) * 1000:,.0f} ms"
    )


def reported_end(outbox_path: Path, call_id: str) -> CallEvent | None:
    """The ``call.ended`` event the worker committed to its outbox for ``call_id``, if any."""
    with Outbox(outbox_path) as outbox:
        for pending in outbox.due(now=float("inf"), limit=1000):
            if pending.call_id == call_id and pending.type == "call.ended":
                return pending.event()
    return None


def print_conversation(transcript: list[dict[str, Any]], t0: float) -> None:
    """Who said what, and when (seconds since dispatch)."""
    print("\nConversation (seconds since dispatch)")
    for item in transcript:
        who = "agent " if item["role"] == "assistant" else "caller"
        print(f"  {item['at'] - t0:7.2f}s  {who}  {item['text']}")


def print_timings(report: CallerReport, dispatched_at: float) -> list[tuple[str, str]]:
    """The timing table as the caller experienced it; returns its rows."""

    class _T:
        wall = dispatched_at

    joined = report.agent_joined
    rows = [
        ("dispatch → agent joined the room", _ms(_T, joined)),
        ("agent joined → first greeting audio", _ms(joined, report.first_agent_audio)),
    ]
    for turn in report.turns:
        rows.append(
            (
                f"turn {turn.index}: end of caller speech → first reply audio",
                _ms(turn.end_of_speech, turn.first_reply_audio),
            )
        )
    width = max(len(r[0]) for r in rows)
    print("\nTimings (measured by the caller)")
    print(f"  {'step'.ljust(width)}  time")
    print(f"  {'-' * width}  --------")
    for name, value in rows:
        print(f"  {name.ljust(width)}  {value}")
    return rows


async def _call(
    server: LiveKitServer, worker: WorkerProcess
) -> tuple[CallerReport, dict[str, Any], float]:
    call_id = f"call_demo{uuid.uuid4().hex[:12]}"
    room = f"demo-{uuid.uuid4().hex[:8]}"
    spec = {
        "call_id": call_id,
        "type": "web",
        "agent_id": AGENT_ID,
        "participant_name": "Dana",
        "metadata": {"source": "demo"},
    }
    _say(f"dispatching web call {call_id} into room {room}")
    dispatched_at = time.time()
    await dispatch_call(
        server.url,
        server.api_key,
        server.api_secret,
        agent_name=worker.agent_name,
        room=room,
        metadata=spec,
    )
    token = caller_token(server.api_key, server.api_secret, room, "caller-dana", name="Dana")

    def progress(ev: Any) -> None:
        if ev.message:
            _say(f"caller: {ev.message}")

    report = await run_caller(
        server.url, token, CallerScript(utterances=UTTERANCES, max_wait_s=90), on_event=progress
    )
    ended = await asyncio.to_thread(worker.wait_for_record, "call ended", 120.0, call_id=call_id)
    return report, ended, dispatched_at


def worker_env(server: LiveKitServer, workdir: Path) -> dict[str, str]:
    """The demo worker's environment (over the caller's): this run's LiveKit and its own outbox.

    The outbox is ``workdir/outbox.sqlite3`` (a fresh temp dir by default), so the demo's events
    never linger in the shared default outbox; and they are not sent to a control plane that the
    environment or ``.env`` configures (it never created the demo's call and would refuse them):
    the demo reads its ``call.ended`` from that file.
    """
    return {
        "LIVEKIT_URL": server.url,
        "LIVEKIT_API_KEY": server.api_key,
        "LIVEKIT_API_SECRET": server.api_secret,
        "CONVOI_NUM_IDLE_PROCESSES": "1",
        "CONVOI_LOAD_THRESHOLD": "inf",
        "CONVOI_OUTBOX_PATH": str(workdir / "outbox.sqlite3"),
        "CONVOI_API_URL": "",
        "CONVOI_EVENTS_SECRET": "",
    }


def run_demo(providers: str, workdir: Path) -> int:
    """Run the demo; returns the process exit code."""
    real = providers == "real" or (
        providers == "auto" and all(os.environ.get(k) for k in PROVIDER_KEYS)
    )
    if providers == "real" and not all(os.environ.get(k) for k in PROVIDER_KEYS):
        _say(f"--providers real needs {', '.join(PROVIDER_KEYS)} set")
        return 2
    started: list[LiveKitServer | ManagedProcess] = []
    try:
        _say("starting livekit-server v1.13.5 on 127.0.0.1:7880 (built once, then cached)")
        server = LiveKitServer(workdir=workdir / "livekit").start()
        started.append(server)
        env = worker_env(server, workdir)
        if real:
            _say("providers: the real OpenAI, Deepgram and ElevenLabs (keys from the environment)")
        else:
            _say("providers: local emulators following " + str(SCENARIO.name))
            emulators = EmulatorsProcess(workdir / "emulators.log").start_and_wait()
            started.append(emulators)
            emulators.load_scenario(SCENARIO)
            env.update(emulators.provider_env())
        _say("starting convoi-worker start")
        worker = WorkerProcess(
            workdir / "worker.log", env, agent_name=f"convoi-demo-{uuid.uuid4().hex[:6]}"
        ).start_and_wait()
        started.append(worker)
        report, ended, dispatched_at = asyncio.run(_call(server, worker))
        # what was said comes from the call's report (customer speech stays out of the logs)
        final = reported_end(workdir / "outbox.sqlite3", str(ended["call_id"]))
        transcript = [t.model_dump(mode="json") for t in final.transcript or []] if final else []
        print_conversation(transcript, dispatched_at)
        print(f"\nCall ended: {ended['reason']}")
        print_timings(report, dispatched_at)
        report.save_wav(workdir / "agent_audio.wav")
        print(f"\nLogs and the agent's audio: {workdir}")
        if not report.ok:
            for error in report.errors:
                print(f"caller error: {error}", file=sys.stderr)
            return 1
        return 0
    finally:
        _say("tearing down")
        for proc in reversed(started):
            proc.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m convoi.devstack.demo``."""
    parser = argparse.ArgumentParser(prog="convoi-demo", description=__doc__.split("\n")[0])
    parser.add_argument("--providers", choices=["auto", "emulators", "real"], default="auto")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where logs go (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="The HMAC key is")  # the devstack's short dev secret
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="convoi-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    return run_demo(args.providers, workdir)


if __name__ == "__main__":
    sys.exit(main())
