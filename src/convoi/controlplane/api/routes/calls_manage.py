"""``/api/v1/public/calls``: list calls, end a call, and a call's webhook deliveries."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from convoi.controlplane.api.deps import PrincipalDep, SessionDep, StateDep
from convoi.controlplane.api.routes.webhooks import ERRORS, SecretPrincipalDep
from convoi.controlplane.calls_list import MAX_LIMIT, CallFilters, list_calls
from convoi.controlplane.db.models import Call
from convoi.controlplane.errors import NotFound
from convoi.controlplane.hangup import HangUp
from convoi.controlplane.presenters import read_model
from convoi.controlplane.schemas import CallRead, ErrorResponse
from convoi.controlplane.webhooks import ensure_secret_key
from convoi.controlplane.webhooks_outbox import call_deliveries
from convoi.controlplane.webhooks_schemas import CallDeliveries, CallList
from convoi.lifecycle import CallStatus

__all__ = ["router"]

router = APIRouter(prefix="/calls", tags=["calls"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such call on this account."}
}
_INVALID: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorResponse, "description": "Invalid parameter (names it)."}
}


@router.get(
    "",
    response_model=CallList,
    responses={**ERRORS, **_INVALID},
    summary="List Calls",
)
def list_account_calls(
    principal: SecretPrincipalDep,
    session: SessionDep,
    state: StateDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Calls per page.")] = 20,
    cursor: Annotated[
        str | None, Query(max_length=400, description="next_cursor of the previous page.")
    ] = None,
    status: CallStatus | None = None,
    type: Literal["web", "outbound_phone"] | None = None,
    agent_id: Annotated[str | None, Query(max_length=80)] = None,
    squad_id: Annotated[str | None, Query(max_length=80)] = None,
    created_after: Annotated[
        datetime | None, Query(description="Inclusive, with a timezone (…Z).")
    ] = None,
    created_before: Annotated[
        datetime | None, Query(description="Exclusive, with a timezone (…Z).")
    ] = None,
) -> Any:
    """The account's calls, newest first (secret keys only), with an opaque cursor."""
    filters = CallFilters(status, type, agent_id, squad_id, created_after, created_before)
    calls, next_cursor = list_calls(
        session, principal.account_id, filters, limit=limit, cursor=cursor
    )
    data = [read_model(call, state.settings) for call in calls]
    return {"object": "list", "data": data, "next_cursor": next_cursor}


@router.post(
    "/{id}/end",
    status_code=202,
    response_model=CallRead,
    responses={
        **{k: v for k, v in ERRORS.items() if k != 403},
        **_NOT_FOUND,
        409: {"model": ErrorResponse, "description": "call_already_ended: the call has ended."},
        502: {"model": ErrorResponse, "description": "LiveKit refused to pass the request on."},
    },
    summary="End a Call",
)
def end_call(id: str, principal: PrincipalDep, state: StateDep) -> JSONResponse:
    """End a live call after the agent's current sentence (completed / api_hangup); a call not
    yet answered is canceled."""
    call = HangUp(state.database, state.gateway, state.settings).end(principal, id)
    return JSONResponse(json.loads(call.model_dump_json()), status_code=202)


@router.get(
    "/{id}/events",
    response_model=CallDeliveries,
    responses={**ERRORS, **_NOT_FOUND},
    summary="List a Call's webhook deliveries",
)
def call_events(id: str, principal: PrincipalDep, session: SessionDep) -> Any:
    """The call's webhook deliveries, delivered and pending, with attempts and last error."""
    ensure_secret_key(principal, "webhook deliveries")
    call = session.get(Call, id)
    if call is None or call.account_id != principal.account_id:
        raise NotFound(f"no call {id!r} on this account", field="id", code="call_not_found")
    data = [
        {
            "id": row.event_id,
            "type": row.type,
            "endpoint_id": row.endpoint_id,
            "url": url,
            "status": row.status,
            "attempts": row.attempts,
            "last_error": row.last_error,
            "last_status_code": row.last_status_code,
            "next_attempt_at": row.next_attempt_at if row.status == "pending" else None,
            "created_at": row.created_at,
            "delivered_at": row.delivered_at,
            "payload": json.loads(row.payload),
        }
        for row, url in call_deliveries(session, id)
    ]
    return {"object": "list", "data": data}
