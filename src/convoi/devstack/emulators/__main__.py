"""CLI: ``python -m convoi.devstack.emulators --host 127.0.0.1 --port 18500
[--scenario FILE] [--record FILE]``.

Prints ``emulators listening on http://HOST:PORT`` on stdout once ready; logs to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from .app import running_emulators
from .scenario import load_scenario


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m convoi.devstack.emulators",
        description="Local OpenAI / Deepgram / ElevenLabs emulators on one port.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=18500)
    p.add_argument("--scenario", type=Path, help="scenario file (YAML or JSON)")
    p.add_argument("--record", type=Path, help="append finished request records here (JSONL)")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    scenario = load_scenario(args.scenario) if args.scenario else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running_emulators(
        args.host, args.port, scenario=scenario, record_file=args.record
    ) as emu:
        print(f"emulators listening on {emu.url}", flush=True)
        await stop.wait()
    logging.getLogger("convoi.devstack.emulators").info("emulators stopped")


def main(argv: list[str] | None = None) -> None:
    """Run the emulators until SIGINT/SIGTERM."""
    args = _parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
