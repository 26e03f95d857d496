"""``convoi-worker outbox``: look into the worker's outbox file without running a worker.

    convoi-worker outbox status                         pending and dead-lettered counts
    convoi-worker outbox dead-letters [--call ID] [--json]
    convoi-worker outbox requeue (--call ID | EVENT_ID ...)

The file is ``--outbox PATH`` or ``CONVOI_OUTBOX_PATH`` (default ``.convoi/outbox.sqlite3``).
Dead letters are events the control plane refused for good (see :mod:`convoi.reporting.refusals`);
they are kept until requeued, then sent by the next worker (or ``python -m
convoi.reporting.delivery --flush``). Nothing printed here includes an event's body.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from convoi.reporting.outbox import DeadLetter, Outbox

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``outbox`` and its subcommands to a ``convoi-worker`` subparser set."""
    parser = sub.add_parser("outbox", help="inspect the event outbox (dead letters, requeue)")
    parser.add_argument("--outbox", type=Path, default=None, help="default: $CONVOI_OUTBOX_PATH")
    actions = parser.add_subparsers(dest="outbox_command", required=True)
    actions.add_parser("status", help="pending and dead-lettered counts")
    dead = actions.add_parser("dead-letters", help="list the events the receiver refused")
    dead.add_argument("--call", default=None, help="only this call id")
    dead.add_argument("--json", action="store_true", help="one JSON object per line")
    requeue = actions.add_parser("requeue", help="put dead letters back for delivery")
    requeue.add_argument("event_ids", nargs="*", metavar="EVENT_ID")
    requeue.add_argument("--call", default=None, help="all dead letters of this call id")


def _row(dead: DeadLetter) -> dict[str, object]:
    return {
        "event_id": dead.event_id,
        "call_id": dead.call_id,
        "sequence": dead.sequence,
        "type": dead.type,
        "status": dead.status,
        "error_code": dead.error_code,
        "scope": dead.scope,
        "attempts": dead.attempts,
        "dead_at": datetime.fromtimestamp(dead.dead_at, UTC).isoformat(timespec="seconds"),
    }


def run(args: argparse.Namespace) -> int:
    """Run the parsed ``outbox`` command; exit code 0, or 2 on a usage error."""
    if args.outbox is not None:
        path = Path(args.outbox)
    else:
        from convoi.reporting.delivery import DeliverySettings

        path = DeliverySettings().outbox_path
    if not path.exists():
        print(f"no outbox at {path}", file=sys.stderr)
        return 2
    with Outbox(path) as outbox:
        if args.outbox_command == "status":
            print(f"{path}: {outbox.pending_count()} pending, {outbox.dead_letter_count()} dead")
            return 0
        if args.outbox_command == "dead-letters":
            rows = [_row(d) for d in outbox.dead_letters(call_id=args.call)]
            for row in rows:
                print(json.dumps(row) if args.json else "  ".join(f"{v}" for v in row.values()))
            if not args.json:
                print(f"{len(rows)} dead letter(s) in {path}", file=sys.stderr)
            return 0
        if not args.event_ids and args.call is None:
            print("requeue needs --call ID or event ids", file=sys.stderr)
            return 2
        moved = outbox.requeue(event_ids=args.event_ids, call_id=args.call)
        print(f"{moved} event(s) requeued in {path}")
        return 0
