"""``convoi-api import agents_config/ --account acct_…``: load definition files into an account.

The folder is loaded by :func:`convoi.definitions.loader.load_definitions`, the validation
``check-config`` runs, and refused with its ``file: field: problem`` lines (exit 1) on any
problem. Every object is then stored on the account (:func:`convoi.controlplane.definitions.
import_definitions`): new or changed objects get a new version, unchanged ones none, so running
the import twice changes nothing the second time. Prices stay with the platform (not imported).
"""

from __future__ import annotations

import sys
from pathlib import Path

from convoi.controlplane import definitions as store
from convoi.controlplane.db.engine import Database
from convoi.controlplane.db.migrate import upgrade_to_head
from convoi.controlplane.keys import ensure_account
from convoi.definitions.loader import ConfigError, load_definitions

__all__ = ["run_import"]


def run_import(database: Database, config_dir: Path, account_id: str) -> int:
    """Import ``config_dir`` into the account; prints what changed. 0 ok, 1 invalid files."""
    try:
        loaded = load_definitions(config_dir)
    except ConfigError as exc:
        for issue in exc.issues:
            print(str(issue), file=sys.stderr)
        print(f"\n{len(exc.issues)} problem(s) in {config_dir}; nothing imported", file=sys.stderr)
        return 1
    upgrade_to_head(database)
    with database.session() as session:
        ensure_account(session, account_id)
        report = store.import_definitions(session, account_id, loaded.definitions)
        session.commit()
    for object_id, version in sorted(report.stored.items()):
        print(f"stored    {object_id} version {version}")
    for object_id, version in sorted(report.unchanged.items()):
        print(f"unchanged {object_id} version {version}")
    print(
        f"{account_id}: {len(report.stored)} stored, {len(report.unchanged)} unchanged "
        f"(from {config_dir})"
    )
    return 0
