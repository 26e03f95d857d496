"""``convoi-api``: run the control plane and manage its database.

::

    convoi-api serve [--host 127.0.0.1] [--port 8000]   # migrations applied at start-up if
                                                        # CONVOI_AUTO_MIGRATE (default true)
    convoi-api migrate                                  # upgrade CONVOI_DATABASE_URL to head
    convoi-api create-key --account acct_demo --kind sk_live   # prints a new key, once
    convoi-api import agents_config/ --account acct_demo       # definitions into an account

Settings come from the environment (see :class:`~convoi.controlplane.settings.ControlPlaneSettings`).
Exit codes: 0 ok, 1 invalid definition files (import), 2 bad settings or arguments.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from convoi.controlplane.db.engine import Database
from convoi.controlplane.db.migrate import upgrade_to_head
from convoi.controlplane.errors import ControlPlaneError
from convoi.controlplane.keys import KEY_KINDS, KeyKind, create_key
from convoi.controlplane.settings import ControlPlaneSettings

__all__ = ["main"]


def _serve(settings: ControlPlaneSettings, args: argparse.Namespace) -> int:
    import uvicorn

    from convoi.controlplane.app import create_app

    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)
    return 0


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
