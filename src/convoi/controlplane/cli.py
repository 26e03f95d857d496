"""``convoi-api``: run the control plane and manage its database.

::

    convoi-api serve [--host 127.0.0.1] [--port 8000] [--processes N]
                       # migrations applied at start-up if CONVOI_AUTO_MIGRATE (default true)
    convoi-api migrate                                  # upgrade CONVOI_DATABASE_URL to head
    convoi-api create-key --account acct_demo --kind sk_live   # prints a new key, once
    convoi-api import agents_config/ --account acct_demo       # definitions into an account

``serve --processes N`` (or ``CONVOI_API_PROCESSES``; default one on SQLite, one per CPU on
PostgreSQL) runs N uvicorn worker processes on one port. The start-up duties that must run once
(migrations, storing ``CONVOI_DEV_API_KEYS``) run in the parent before the workers start; each
worker has its own database pools and threads (the per-process settings), and what must be
shared is: idempotency (the database's unique constraint), the concurrency limit (counted in the
database under a database lock), the call lease sweep (one process at a time, a database lock),
the rate limits (Redis, with ``CONVOI_REDIS_URL``; else each process counts its own).

Settings come from the environment (see :class:`~convoi.controlplane.settings.ControlPlaneSettings`).
Exit codes: 0 ok, 1 invalid definition files (import), 2 bad settings or arguments.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from convoi.controlplane.db.engine import Database
from convoi.controlplane.db.migrate import upgrade_to_head
from convoi.controlplane.errors import ControlPlaneError
from convoi.controlplane.keys import KEY_KINDS, KeyKind, create_key, store_key
from convoi.controlplane.log import logger
from convoi.controlplane.settings import ControlPlaneSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["WORKER_ENV", "main", "worker_app"]


def _serve(settings: ControlPlaneSettings, args: argparse.Namespace) -> int:
    import uvicorn

    from convoi.controlplane.app import create_app

    processes = args.processes or settings.processes
    options = {
        "host": args.host,
        "port": args.port,
        "log_level": args.log_level,
        "timeout_keep_alive": args.timeout_keep_alive,
    }
    if processes == 1:
        uvicorn.run(create_app(settings), **options)
        return 0
    _prepare_once(settings)
    os.environ.update(WORKER_ENV)  # the workers read their settings from the environment
    logger.info("serving with %d API processes", processes)
    uvicorn.run(
        f"{__name__}:worker_app",
        factory=True,
        workers=processes,
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
        **options,
    )
    return 0


WORKER_HEALTHCHECK_SECONDS = 60
"""uvicorn kills (and replaces) a worker that does not answer its ping for this long; its 5 s
default kills workers still importing on a busy machine."""
WORKER_ENV = {"CONVOI_AUTO_MIGRATE": "false", "CONVOI_DEV_API_KEYS": ""}
"""What ``serve --processes N`` sets for its workers: the parent did these duties once."""


def _prepare_once(settings: ControlPlaneSettings) -> None:
    """Migrate and store the dev keys, once, before the worker processes start."""
    database = Database(settings.database_url)
    try:
        if settings.auto_migrate:
            logger.info("database at revision %s", upgrade_to_head(database))
        with database.session() as session:
            for account_id, key in settings.dev_keys():
                store_key(session, account_id, key)
    finally:
        database.dispose()


def worker_app() -> FastAPI:
    """The app of one ``serve --processes N`` worker (uvicorn's factory; settings from env)."""
    from convoi.controlplane.app import create_app

    return create_app(ControlPlaneSettings())


def _migrate(settings: ControlPlaneSettings, _args: argparse.Namespace) -> int:
    revision = upgrade_to_head(settings.database_url)
    print(f"database at revision {revision}")
    return 0


def _create_key(settings: ControlPlaneSettings, args: argparse.Namespace) -> int:
    database = Database(settings.database_url)
    try:
        upgrade_to_head(database)
        kind: KeyKind = args.kind
        with database.session() as session:
            key = create_key(session, args.account, kind)
    finally:
        database.dispose()
    print(
        f"new {args.kind} key for {args.account} (shown once; only its hash is stored):",
        file=sys.stderr,
    )
    print(key)
    return 0


def _import(settings: ControlPlaneSettings, args: argparse.Namespace) -> int:
    from convoi.controlplane.definitions_import import run_import

    database = Database(settings.database_url)
    try:
        return run_import(database, Path(args.config_dir), args.account)
    finally:
        database.dispose()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="convoi-api", description="Convoi control plane")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--log-level", default="info")
    serve.add_argument(
        "--processes",
        type=int,
        default=0,
        help="API processes on the port (default CONVOI_API_PROCESSES: 1 on SQLite, CPUs else)",
    )
    serve.add_argument(
        "--timeout-keep-alive", type=int, default=5, help="seconds an idle connection is kept"
    )
    serve.set_defaults(run=_serve)
    migrate = commands.add_parser("migrate", help="apply pending database migrations")
    migrate.set_defaults(run=_migrate)
    key = commands.add_parser("create-key", help="mint an API key (the account is created if new)")
    key.add_argument("--account", required=True, help="account id, e.g. acct_demo")
    key.add_argument("--kind", choices=KEY_KINDS, default="sk_live")
    key.set_defaults(run=_create_key)
    imp = commands.add_parser(
        "import", help="import definition files (agents_config/) into an account, idempotently"
    )
    imp.add_argument("config_dir", help="the definitions folder, e.g. agents_config/")
    imp.add_argument("--account", required=True, help="account id, e.g. acct_demo")
    imp.set_defaults(run=_import)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = ControlPlaneSettings()
    except ValidationError as exc:
        print(f"convoi-api: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    try:
        return int(args.run(settings, args))
    except ControlPlaneError as exc:
        print(f"convoi-api: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
