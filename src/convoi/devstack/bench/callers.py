"""The benchmark's callers, in a process of their own (pinned to one core when asked).

    python -m convoi.devstack.bench.callers [--cpu N] < batch.json > results.json

Reads one batch from stdin: ``{"url", "api_key", "api_secret", "utterances", "max_wait_s",
"pause_settle_s", "calls": [{"agent_name", "room", "metadata", "label"}]}`` (an utterance is a
line, or a pausing one as :func:`~convoi.devstack.caller.pauses.utterance_to_json` writes it;
``pause_settle_s`` is optional). Every call of the batch starts at once:
dispatch the agent into a new room, then join it as the scripted caller
(:mod:`convoi.devstack.caller`: real WebRTC audio, espeak-ng speech). Writes one JSON list to
stdout: per call ``{"label", "room", "dispatched", "report"}`` (``dispatched`` is epoch seconds
right before the dispatch request; ``report`` is :meth:`CallerReport.to_dict`). One progress line
per call goes to stderr. Keeping the callers here, on their own core, keeps their CPU (speech
synthesis, Opus, WebRTC) out of the worker's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import warnings
from typing import Any

from convoi.devstack.caller import CallerScript, caller_token, run_caller
from convoi.devstack.caller.pauses import utterance_from_json
from convoi.devstack.harness import dispatch_call

__all__ = ["main", "run_batch"]


async def _one(batch: dict[str, Any], call: dict[str, Any]) -> dict[str, Any]:
    url, key, secret = batch["url"], batch["api_key"], batch["api_secret"]
    dispatched = time.time()
    await dispatch_call(
        url,
        key,
        secret,
        agent_name=call["agent_name"],
        room=call["room"],
        metadata=call["metadata"],
    )
    token = caller_token(key, secret, call["room"], "bench-caller")
    settle = float(batch.get("pause_settle_s", CallerScript.pause_settle_s))
    script = CallerScript(
        utterances=[utterance_from_json(u) for u in batch["utterances"]],
        max_wait_s=batch["max_wait_s"],
        pause_settle_s=settle,
        cut_in_reply_wait_s=settle,
    )
    report = await run_caller(url, token, script)
    latencies = ", ".join(f"{v:.0f}" for v in report.reply_latencies_ms if v is not None)
    status = "ok" if report.ok else f"errors: {report.errors}"
    if any(t.fragments for t in report.turns):
        cuts = sum(1 for t in report.turns if t.false_cut_in)
        status = f"false cut-ins {cuts}/{len(report.turns)}, {status}"
    print(
        f"  {call['label']}: greeting {report.greeting_latency_ms or 0:.0f} ms, replies [{latencies}] ms, {status}",
        file=sys.stderr,
        flush=True,
    )
    return {
        "label": call["label"],
        "room": call["room"],
        "dispatched": dispatched,
        "report": report.to_dict(),
    }


async def run_batch(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """Run every call of ``batch`` at once; their results in the batch's order."""
    return list(await asyncio.gather(*(_one(batch, c) for c in batch["calls"])))


def main(argv: list[str] | None = None) -> int:
    """Read a batch from stdin, run it, write the results to stdout."""
    parser = argparse.ArgumentParser(prog="convoi-bench-callers")
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to one core")
    args = parser.parse_args(argv)
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    warnings.filterwarnings("ignore", message="The HMAC key is")  # the devstack's short secret
    batch = json.load(sys.stdin)
    results = asyncio.run(run_batch(batch))
    json.dump(results, sys.stdout)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
