"""``/internal/v1/calls/{call_id}/events``: signed call events from the worker (docs/architecture.md §8).

Answers like the reference receiver: 201 ``{"status": "stored"}``, 200 ``{"status":
"duplicate"}``; errors use the API's error body (401 ``invalid_signature``, 422 ``invalid_event``,
``call_id_mismatch``, ``event_id_mismatch``; 404 ``call_not_found`` for a call never created here).

Served on its own threads (``CONVOI_DB_EVENTS_POOL_SIZE`` of them) and its own database pool,
so public traffic that saturates the Calls API never starves the worker's reports.
"""

from __future__ import annotations

from collections.abc import Mapping

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from convoi.controlplane.api.deps import RawBodyDep, StateDep
from convoi.controlplane.api.state import ControlPlaneState
from convoi.controlplane.db.engine import Database
from convoi.controlplane.errors import AuthenticationFailed, InvalidRequest
from convoi.controlplane.events import ingest
from convoi.receiver import IngestResult
from convoi.reporting.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER

__all__ = ["router"]

router = APIRouter(prefix="/calls", tags=["internal"], include_in_schema=False)

_SIGNATURE_FIELDS = {
    "stale_timestamp": TIMESTAMP_HEADER,
    "future_timestamp": TIMESTAMP_HEADER,
    "mismatch": SIGNATURE_HEADER,
}


def _ingest(
    database: Database, secret: str, headers: Mapping[str, str], body: bytes, call_id: str
) -> IngestResult:
    with database.session() as session:
        return ingest(session, [secret], headers, body, call_id)


def _limiter(state: ControlPlaneState) -> anyio.CapacityLimiter:
    if state.events_limiter is None:
        state.events_limiter = anyio.CapacityLimiter(state.settings.db_events_pool_size)
    return state.events_limiter


@router.post("/{call_id}/events")
async def receive_event(
    call_id: str, request: Request, body: RawBodyDep, state: StateDep
) -> JSONResponse:
    """Store one signed call event and apply it to the call."""
    secret = state.settings.events_secret.get_secret_value()
    result = await anyio.to_thread.run_sync(
        _ingest, state.events_db, secret, request.headers, body, call_id, limiter=_limiter(state)
    )
    payload = result.payload
    if result.status_code == 401:
        header = _SIGNATURE_FIELDS.get(str(payload.get("reason")), SIGNATURE_HEADER)
        raise AuthenticationFailed(
            f"invalid signature ({payload.get('reason')}): {payload.get('detail')}",
            field=header,
            code="invalid_signature",
        )
    if result.status_code >= 400:
        detail = payload.get("detail")
        field: str | None = None
        if isinstance(detail, list) and detail:
            loc = [str(p) for p in detail[0].get("loc", [])]
            field = ".".join(loc) or None
            detail = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in detail[:5])
        raise InvalidRequest(str(detail), field=field, code=str(payload.get("error")))
    return JSONResponse(payload, status_code=result.status_code)
