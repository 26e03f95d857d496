"""What a call's GET adds from the worker's stored events: the cost breakdown, the transcript,
the handoffs and the per-turn latency (``GET /api/v1/public/calls/{id}`` with a secret key).

The call row keeps the latest status, duration and cost total only; the rest is in the events
the worker sent (``call_events``). Two reads, both bounded to one row:

- the newest *applied* event (``sequence`` up to the call's ``last_event_sequence``; a late,
  older event or one refused after the ending never counts) gives ``cost.by_component``,
  ``cost.by_member`` and ``cost.unpriced`` while the call runs and once it has ended;
- the newest applied ``call.ended`` gives ``transcript``, ``handoffs`` and ``latency`` (null
  until the call has ended, and for calls that ended without the worker's report, e.g.
  ``worker_lost``).

Customer speech: only secret keys get these fields (publishable keys ship in web pages; see
:meth:`convoi.controlplane.calls.CallService.read`); nothing here is logged.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from convoi.controlplane.db.models import Call, CallEventRecord
from convoi.controlplane.presenters import amount_number
from convoi.lifecycle import TERMINAL_STATUSES
from convoi.reporting.events import CallEvent

__all__ = ["call_report", "report_fields"]


def report_fields(latest: CallEvent | None, ended: CallEvent | None) -> dict[str, Any]:
    """The GET extensions from the newest applied event and the applied ``call.ended`` (pure).

    ``{"cost": {"by_component", "by_member", "unpriced"}, "transcript", "handoffs",
    "latency"}``; money as numbers rounded to 6 decimals, like ``cost.amount``.
    """
    fields: dict[str, Any] = {"transcript": None, "handoffs": None, "latency": None}
    if latest is not None:
        cost = latest.cost
        fields["cost"] = {
            "by_component": {k: amount_number(str(v)) for k, v in cost.by_component.items()},
            "by_member": {k: amount_number(str(v)) for k, v in cost.by_member.items()},
            "unpriced": list(cost.unpriced),
        }
    if ended is not None:
        for name in ("transcript", "handoffs", "latency"):
            items = getattr(ended, name)
            fields[name] = [item.model_dump(mode="json") for item in items or ()]
    return fields


def _newest(session: Session, call: Call, *, ended_only: bool) -> CallEvent | None:
    query = select(CallEventRecord.body).where(
        CallEventRecord.call_id == call.id,
        CallEventRecord.sequence <= call.last_event_sequence,
    )
    if ended_only:
        query = query.where(CallEventRecord.type == "call.ended")
    body = session.scalars(query.order_by(CallEventRecord.sequence.desc()).limit(1)).first()
    return None if body is None else CallEvent.model_validate_json(body)


def call_report(session: Session, call: Call) -> dict[str, Any]:
    """The GET extensions of ``call`` from its stored events (see the module doc)."""
    if call.last_event_sequence <= 0:
        return report_fields(None, None)
    latest = _newest(session, call, ended_only=False)
    ended = latest if latest is not None and latest.type == "call.ended" else None
    if ended is None and call.status in TERMINAL_STATUSES:  # call.status after call.ended
        ended = _newest(session, call, ended_only=True)
    return report_fields(latest, ended)
