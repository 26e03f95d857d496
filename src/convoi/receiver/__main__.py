"""``python -m convoi.receiver --port P --db FILE --secret-env NAME``: run the reference receiver.

Prints ``receiver listening on http://HOST:PORT`` once it accepts connections (``--port 0`` picks
a free port). ``--secret-env`` names the environment variable holding the shared secret; repeat
it to accept several secrets during a rotation. Stops on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from aiohttp import web

from convoi.receiver.app import create_app
from convoi.receiver.store import ReceiverStore

__all__ = ["main", "serve"]


async def serve(host: str, port: int, db: Path, secrets: list[str]) -> None:
    """Run the receiver until SIGINT/SIGTERM."""
    store = ReceiverStore(db)
    runner = web.AppRunner(create_app(store, secrets), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1]
        print(f"receiver listening on http://{host}:{bound_port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
        store.close()


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and serve; exit 2 if a secret variable is unset."""
    parser = argparse.ArgumentParser(prog="python -m convoi.receiver")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--db", type=Path, default=Path("receiver.sqlite3"))
    parser.add_argument(
        "--secret-env",
        action="append",
        metavar="NAME",
        help="variable holding an accepted secret (repeatable; default CONVOI_EVENTS_SECRET)",
    )
    args = parser.parse_args(argv)
    names = args.secret_env or ["CONVOI_EVENTS_SECRET"]
    secrets = [os.environ.get(name, "") for name in names]
    missing = [name for name, value in zip(names, secrets, strict=True) if not value]
    if missing:
        print(f"secret variable(s) not set: {', '.join(missing)}", file=sys.stderr)
        return 2
    asyncio.run(serve(args.host, args.port, args.db, secrets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
