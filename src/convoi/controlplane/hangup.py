"""Ending a call through the API: ``POST /api/v1/public/calls/{id}/end``.

- **active**: the control plane publishes an end request in the call's room (LiveKit
  ``SendData`` on :data:`convoi.room_control.TOPIC`); the job ends the call after the sentence
  its agent is saying, ``completed`` / ``api_hangup``, and reports it as every ending is
  reported. The answer is 202 with the call as it is now (still ``active``); poll it, or wait for
  the ``call.ended`` webhook. Asking again while it ends answers 202 again (and asks again).
- **initiated / ringing** (nobody is talking yet): the control plane cancels the call itself:
  ``canceled`` / ``api_hangup`` (fault null), a ``call.ended`` event stored for it, the
  customer's webhooks enqueued, and its room deleted, which stops the ringing or the waiting job.
  A worker's later report of another ending does not change it (the first terminal event wins).
- **ended** (any terminal status): 409 ``call_already_ended``.

Visibility is GET's: a secret key ends any call of its account, a publishable key only web calls
(it may end what it may read).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import update
from sqlalchemy.orm import Session

from convoi.controlplane import webhooks_outbox
from convoi.controlplane.db.engine import Database
from convoi.controlplane.db.models import Call, CallEventRecord, utcnow
from convoi.controlplane.errors import Conflict, LiveKitFailure, LiveKitRejected, NotFound
from convoi.controlplane.keys import Principal
from convoi.controlplane.livekit import LiveKitGateway, RoomMessenger
from convoi.controlplane.log import logger
from convoi.controlplane.presenters import read_model
from convoi.controlplane.schemas import PhoneCall, WebCall
from convoi.controlplane.settings import ControlPlaneSettings
from convoi.lifecycle import TERMINAL_STATUSES
from convoi.reporting.events import CallEvent, Cost
from convoi.room_control import TOPIC, encode_end

__all__ = ["CANCEL_DETAIL", "HangUp"]

CANCEL_DETAIL = "ended through the API before it was answered"
_STARTING = ("initiated", "ringing")


def _visible(session: Session, principal: Principal, call_id: str) -> Call:
    call = session.get(Call, call_id)
    if (
        call is None
        or call.account_id != principal.account_id
        or (not principal.is_secret and call.type != "web")
    ):
        raise NotFound(f"no call {call_id!r} on this account", field="id", code="call_not_found")
    return call


def _cancel(session: Session, call: Call) -> bool:
    """Cancel a call not yet active; False if it moved on meanwhile. Commits."""
    previous, now = call.status, utcnow()
    moved = session.execute(
        update(Call)
        .where(Call.id == call.id, Call.status == previous)
        .values(
            status="canceled",
            ended_reason="api_hangup",
            fault=None,
            detail=CANCEL_DETAIL,
            last_event_sequence=Call.last_event_sequence + 1,
            updated_at=now,
        )
    )
    if not moved.rowcount:  # type: ignore[attr-defined]  # DML returns a CursorResult
        session.rollback()
        return False
    session.refresh(call)
    event = CallEvent(
        id=f"evt_{uuid.uuid4().hex}",
        call_id=call.id,
        sequence=call.last_event_sequence,
        type="call.ended",
        created_at=now.timestamp(),
        status="canceled",
        ended_reason="api_hangup",
        detail=CANCEL_DETAIL,
        cost=Cost(amount=Decimal(call.cost_amount)),
        metadata=call.call_metadata,
    )
    session.add(
        CallEventRecord(
            id=event.id,
            call_id=call.id,
            sequence=event.sequence,
            type=event.type,
            status=event.status,
            received_at=now,
            body=event.model_dump_json(),
            duplicates=0,
        )
    )
    webhooks_outbox.on_status_change(session, call, previous, now=now)
    webhooks_outbox.on_call_ended(session, call, event, now=now)
    session.commit()
    return True


@dataclass
class HangUp:
    """The hang-up API's logic: the database (a short session), LiveKit and the settings."""

    database: Database
    gateway: LiveKitGateway
    settings: ControlPlaneSettings

    def end(self, principal: Principal, call_id: str) -> WebCall | PhoneCall:
        """End the call (see the module doc); the call as it is after the request."""
        with self.database.session() as session:
            call = _visible(session, principal, call_id)
            canceled = call.status in _STARTING and _cancel(session, call)
            if not canceled:
                session.refresh(call)
            if call.status in TERMINAL_STATUSES and not canceled:
                raise Conflict(
                    f"call {call_id!r} has already ended ({call.status}, "
                    f"{call.ended_reason or 'no reason'})",
                    field="id",
                    code="call_already_ended",
                )
            body = read_model(call, self.settings)
        fields = {"call_id": call_id, "account_id": principal.account_id}
        room = call.room_id or call_id
        if canceled:
            logger.info("call canceled through the API", extra=fields)
            try:
                self.gateway.delete_room(room)
            except LiveKitFailure as exc:  # the call is canceled anyway
                logger.info("could not delete the room of a canceled call: %s", exc.message)
            return body
        if not isinstance(self.gateway, RoomMessenger):
            raise LiveKitRejected("this LiveKit gateway cannot send data to rooms")
        self.gateway.send_data(room, TOPIC, encode_end(call_id))
        logger.info("call end requested through the API", extra=fields)
        return body
