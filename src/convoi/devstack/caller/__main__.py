"""``python -m convoi.devstack.caller``: the simulated caller from the command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from convoi.devstack.caller.report import CallerEvent, CallerScript
from convoi.devstack.caller.session import run_caller
from convoi.devstack.caller.token import caller_token

# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m convoi.devstack.caller",
        description="Join a LiveKit room as a simulated web caller, talk to the agent, measure.",
    )
    p.add_argument("--url", required=True, help="LiveKit URL, e.g. ws://127.0.0.1:7880")
    p.add_argument("--token", help="access token (else minted from --api-key/--api-secret/--room)")
    p.add_argument("--api-key", help="mint a token with this key (with --api-secret and --room)")
    p.add_argument("--api-secret")
    p.add_argument("--room")
    p.add_argument("--identity", default="caller")
    p.add_argument("--say", action="append", default=[], help="an utterance (repeatable)")
    p.add_argument("--no-greeting", action="store_true", help="speak without waiting for one")
    p.add_argument("--silence-ms", type=int, default=700, help="agent quiet time = finished")
    p.add_argument("--max-wait", type=float, default=60.0, help="deadline of each step (s)")
    p.add_argument(
        "--stay", action="store_true", help="after the last reply, wait for the agent to hang up"
    )
    p.add_argument("--agent-identity", help="participant to treat as the agent")
    p.add_argument("--json", dest="json_path", help="write the report here")
    p.add_argument("--wav", dest="wav_path", help="write the recorded agent audio here")
    args = p.parse_args(argv)
    if not args.token and not (args.api_key and args.api_secret and args.room):
        p.error("give --token, or --api-key, --api-secret and --room")
    return args


def _print_event(event: CallerEvent) -> None:
    print(
        f"[{time.strftime('%H:%M:%S', time.localtime(event.at.wall))}] {event.message}", flush=True
    )


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; exit status 0 when every step succeeded."""
    args = _parse_args(argv)
    token = args.token or caller_token(args.api_key, args.api_secret, args.room, args.identity)
    script = CallerScript(
        utterances=list(args.say),
        wait_for_greeting=not args.no_greeting,
        end_silence_ms=args.silence_ms,
        max_wait_s=args.max_wait,
        hang_up_after=not args.stay,
        agent_identity=args.agent_identity,
    )
    report = asyncio.run(run_caller(args.url, token, script, on_event=_print_event))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report.to_dict(), indent=2))
        print(f"report written to {args.json_path}")
    if args.wav_path:
        report.save_wav(args.wav_path)
        print(f"agent audio ({report.agent_audio_seconds:.1f} s) written to {args.wav_path}")
    lat = report.reply_latencies_ms
    print(
        "summary: greeting latency "
        + (
            f"{report.greeting_latency_ms:.0f} ms"
            if report.greeting_latency_ms is not None
            else "n/a"
        )
        + ", reply latencies "
        + (", ".join(f"{x:.0f} ms" if x is not None else "n/a" for x in lat) or "n/a")
        + (f", errors: {'; '.join(report.errors)}" if report.errors else ", ok")
    )
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
