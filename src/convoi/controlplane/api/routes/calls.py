"""``/api/v1/public/calls``: create a call, read it back."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Response

from convoi.controlplane.api.deps import CallBodyDep, CallServiceDep, PrincipalDep
from convoi.controlplane.examples import CALL_CREATE_EXAMPLES
from convoi.controlplane.idempotency import HEADER, MAX_KEY_LENGTH
from convoi.controlplane.schemas import CallCreate, CallCreated, CallRead, ErrorResponse

__all__ = ["router"]

router = APIRouter(prefix="/calls", tags=["calls"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {
        401: "Missing, malformed or unknown API key.",
        403: "A publishable key (pk_live_) tried a workforce or phone call.",
        409: "A request with the same Idempotency-Key is still running.",
        413: "Request body over 1 MiB (refused while it streams in).",
        415: "The body is not sent as Content-Type: application/json.",
        422: "Invalid body (the error names the field), or an Idempotency-Key reused with a "
        "different body.",
        429: "rate_limited: the key's request rate limit; concurrency_limit: the account has "
        "its maximum of calls in progress. Retry after the Retry-After header's seconds.",
        502: "LiveKit refused to create the room or dispatch the agent; the call is stored as "
        "failed.",
        503: "LiveKit unreachable (the call is stored as failed), or the API saturated "
        "(overloaded, database_busy; Retry-After). Safe to retry.",
    }.items()
}

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=HEADER,
        max_length=MAX_KEY_LENGTH,
        description="Optional: any random UUID. Makes this POST safe to retry within 24 hours: "
        "repeating the same key with the same body returns the original call (same status and "
        "body, header Idempotent-Replayed: true) instead of creating a duplicate; the same key "
        "with a different body is refused with 422 idempotency_key_reused.",
    ),
]


@router.post(
    "",
    status_code=201,
    response_model=CallCreated,
    responses=_ERRORS,
    summary="Create a Call",
)
def create_call(
    body: Annotated[CallCreate, Body(openapi_examples=CALL_CREATE_EXAMPLES)],
    raw_body: CallBodyDep,
    principal: PrincipalDep,
    service: CallServiceDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Start a web call or an outbound phone call from a single endpoint, set type to "web" or "outbound_phone"."""
    result = service.create(principal, body, raw_body, idempotency_key)
    headers = {"Idempotent-Replayed": "true"} if result.replayed else None
    return Response(result.body, result.status_code, headers, media_type="application/json")


_READ_ERRORS: dict[int | str, dict[str, Any]] = {
    **{k: v for k, v in _ERRORS.items() if k in (401, 422, 429, 503)},
    404: {"model": ErrorResponse, "description": "No such call on this account."},
}


@router.get(
    "/{id}",
    response_model=CallRead,
    responses=_READ_ERRORS,
    summary="Get a Call",
)
def read_call(id: str, principal: PrincipalDep, service: CallServiceDep) -> Any:
    """Poll a call for its live status, duration and cost."""
    return service.read(principal, id)
