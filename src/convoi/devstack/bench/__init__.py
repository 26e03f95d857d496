"""Side-by-side benchmark: convoi's worker against a stock livekit-agents web agent.

    python -m convoi.devstack.bench [--calls 8] [--turns 2] [--latency 0/0/0 --latency 250/400/150]
                                    [--callers plain,pausing] [--ours-env KEY=VALUE ...]
                                    [--concurrency 1,4,8,16] [--plots docs/bench] [--json out.json]
    python -m convoi.devstack.bench --smoke        # 1 call each, 1 turn, plain, concurrency 1 (CI)

One run starts livekit-server (ports 7940-7942), the provider emulators (7945), convoi's
``convoi-worker start`` and the stock agent (:mod:`convoi.devstack.bench.stock_agent`, minimal as
in LiveKit's docs, same plugins from the same agent definition), each registered under its own
agent name, so it runs beside the e2e tests. Calls come from a separate process pinned to the last
core (:mod:`convoi.devstack.bench.callers`: real WebRTC audio, espeak-ng speech).

* Per injected latency (``--latency STT/LLM/TTS`` ms): ``--calls`` calls per worker, one at a
  time, interleaved (ours, stock, ours, …); a table of p50 / p95 for both and the ratio: dispatch →
  agent joined, caller joined → first greeting audio, end of caller speech → first reply audio and
  that reply's decomposition (:mod:`convoi.devstack.bench.measures`), from the emulators' request
  records and the workers' end-of-turn metrics (:mod:`convoi.worker.turn_timing`).
* ``--callers``: the caller sets (:mod:`convoi.devstack.bench.sets`; default both, smoke: plain):
  each latency block runs once per set. ``pausing`` callers say their utterances in fragments
  with 450-900 ms pauses; its table's "false cut-ins (turns)" row counts the turns whose reply
  started before the real end of speech (count / turns (rate) per worker), and the reply figures
  are over the other turns, from the real end of speech.
* ``--ours-env KEY=VALUE`` (repeatable): extra environment of convoi's worker only, to try a
  setting side by side with the stock agent (e.g. endpointing); the defaults stay as they are.
* Memory: PSS / USS of each call's job process (peak while the call ran), whole idle worker PSS.
* ``--concurrency``: per level N and worker, N simultaneous calls: reply p50 / p95, dispatch →
  joined p95, the worker tree's CPU seconds per call-minute, marginal PSS per active call and PSS
  per job process; PNG plots (``--plots``; matplotlib from the ``bench`` extra).

Targets live in BENCHMARKS.md, never in tests. Exit status 1 when a call failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from convoi.devstack.bench.measures import (
    JOIN_MEASURES,
    MEMORY_MEASURES,
    RATE_MEASURES,
    REPLY_MEASURES,
    Measures,
    comparison_rows,
    comparison_table,
    pause_rows,
    pause_table,
    rate_rows,
)
from convoi.devstack.bench.run import Latency, Stack, caller_core, level, parse_env, sequential
from convoi.devstack.bench.sets import CALLER_SETS, parse_sets

__all__ = ["main", "parse_args"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="convoi-bench", description=__doc__.split("\n")[0])
    p.add_argument("--calls", type=int, default=8, help="calls per worker and latency setting")
    p.add_argument("--turns", type=int, default=2, help="caller utterances per call")
    p.add_argument(
        "--latency",
        action="append",
        type=Latency.parse,
        help="injected provider latency STT/LLM/TTS in ms (repeatable; default 0/0/0)",
    )
    p.add_argument(
        "--callers",
        type=_sets,
        default=None,
        help=f"caller sets, comma-separated, of {', '.join(CALLER_SETS)} (default: all; smoke: plain)",
    )
    p.add_argument(
        "--ours-env",
        action="append",
        type=_env,
        default=[],
        metavar="KEY=VALUE",
        help="environment of convoi's worker only (repeatable)",
    )
    p.add_argument("--concurrency", default="", help="sweep levels, e.g. 1,4,8,16 (none: skip)")
    p.add_argument("--idle-processes", type=int, default=1, help="warm job processes per worker")
    p.add_argument("--plots", type=Path, default=None, help="folder for the sweep's PNG plots")
    p.add_argument("--json", type=Path, default=None, help="write every figure as JSON here")
    p.add_argument("--no-pin", action="store_true", help="do not pin the callers to a core")
    p.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    p.add_argument("--smoke", action="store_true", help="1 call each, 1 turn, concurrency 1")
    return p


def _sets(text: str) -> tuple[str, ...]:
    try:
        return parse_sets(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def _env(text: str) -> tuple[str, str]:
    try:
        return parse_env(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with ``--smoke`` and the caller sets' default applied."""
    args = _parser().parse_args(argv)
    if args.smoke:
        args.calls, args.turns, args.concurrency = 1, 1, "1"
    if args.callers is None:
        args.callers = ("plain",) if args.smoke else CALLER_SETS
    return args


def _sweep_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| calls | worker | reply p50 / p95 (ms) | dispatch → joined p95 (ms) | CPU s per call-minute | marginal PSS per call (MB) | PSS per job process (MB) | failed |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def f(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.0f}"

    for r in rows:
        cpu = "n/a" if r["cpu_s_per_call_min"] is None else f"{r['cpu_s_per_call_min']:.1f}"
        lines.append(
            f"| {r['n']} | {r['side']} | {f(r['reply_p50'])} / {f(r['reply_p95'])} | {f(r['join_p95'])} | {cpu} | {f(r['pss_per_call'])} | {f(r['job_pss'])} | {r['failed']} |"
        )
    return "\n".join(lines)


def _rows_json(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {**r, "ours": r["ours"] and asdict(r["ours"]), "stock": r["stock"] and asdict(r["stock"])}
        for r in rows
    ]


def _report(stack: Stack, out: dict[str, Any], memory: dict[str, Measures]) -> None:
    print(
        f"\n{os.cpu_count()} cores; load average {out['load'][0]:.1f} before, {out['load'][1]:.1f} after"
    )
    print(
        f"callers pinned to core {stack.caller_cpu}"
        if stack.caller_cpu is not None
        else "callers not pinned"
    )
    if stack.ours_env:
        print(f"convoi's worker ran with {' '.join(f'{k}={v}' for k, v in stack.ours_env.items())}")
    for block in out["sequential"]:
        print(
            f"\n### {block['callers']} callers: {block['calls']} calls each, {block['turns']} turns, {block['latency']}\n"
        )
        rows = JOIN_MEASURES + REPLY_MEASURES
        print(comparison_table(block["ours"], block["stock"], rows, RATE_MEASURES))
        block["table"] = _rows_json(comparison_rows(block["ours"], block["stock"], rows))
        block["rates"] = _rows_json(rate_rows(block["ours"], block["stock"], RATE_MEASURES))
        pauses = pause_table(block["ours"], block["stock"])
        if pauses:
            print(
                f"\ncut-ins by pause length (a pause the agent let pass, or cut into)\n\n{pauses}"
            )
        block["pauses"] = _rows_json(pause_rows(block["ours"], block["stock"]))
        overlaps = {k: len(block[k].get("overlaps", [])) for k in ("ours", "stock")}
        if any(overlaps.values()):
            print(f"\nturns the agent talked over (left out): {overlaps}")
    idle = {s.label: [s.idle_pss] for s in stack.sides}
    mem = {label: {**memory[label], "idle_pss": idle[label]} for label in memory}
    out["memory"] = mem
    print("\n### Memory (MB)\n")
    print(comparison_table(mem["ours"], mem["stock"], MEMORY_MEASURES))
    out["memory_table"] = _rows_json(comparison_rows(mem["ours"], mem["stock"], MEMORY_MEASURES))
    if out["sweep"]:
        print("\n### Concurrency (instant providers)\n")
        print(_sweep_table(out["sweep"]))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the tables (Markdown)."""
    args = parse_args(argv)
    latencies: list[Latency] = args.latency or [Latency()]
    levels = [int(v) for v in args.concurrency.split(",") if v.strip()]
    if args.plots is not None and len(levels) > 1:
        from convoi.devstack.bench.plots import MISSING

        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(MISSING, file=sys.stderr)
            return 2
    # SIGTERM (or SIGINT, which a background job ignores) still stops what the run started
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="convoi-bench-"))
    print(f"work folder: {work}", file=sys.stderr, flush=True)
    stack = Stack(
        work, args.idle_processes, None if args.no_pin else caller_core(), dict(args.ours_env)
    )
    memory: dict[str, Measures] = {"ours": {}, "stock": {}}
    out: dict[str, Any] = {"sequential": [], "sweep": [], "load": [os.getloadavg()[0], 0.0]}
    try:
        stack.start()
        print("livekit-server, emulators and both workers up", file=sys.stderr, flush=True)
        for latency in latencies:
            for caller_set in args.callers:
                print(
                    f"{latency.label()}, {caller_set} callers: {args.calls} calls each",
                    file=sys.stderr,
                    flush=True,
                )
                got = sequential(stack, latency, args.calls, args.turns, memory, caller_set)
                block = {"latency": latency.label(), "callers": caller_set}
                out["sequential"].append({**block, "calls": args.calls, "turns": args.turns, **got})
        for n in levels:
            for side in stack.sides:
                print(f"{side.label}: {n} simultaneous calls", file=sys.stderr, flush=True)
                out["sweep"].append(level(stack, side, n, args.turns))
    finally:
        stack.stop()
        out["load"][1] = os.getloadavg()[0]
    _report(stack, out, memory)
    if args.plots is not None and len(levels) > 1:
        from convoi.devstack.bench.plots import plot_sweep

        for path in plot_sweep(out["sweep"], args.plots):
            print(f"plot: {path}", file=sys.stderr)
    if args.json is not None:
        args.json.write_text(json.dumps({**out, "calls": stack.raw}, indent=1))
    failed = stack.failures
    if failed or args.keep:
        print(f"logs kept in {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0
