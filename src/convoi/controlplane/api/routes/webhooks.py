"""``/api/v1/public/webhooks``: the account's webhook endpoints (secret keys only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends

from convoi.controlplane.api.deps import PrincipalDep, SessionDep, SettingsDep
from convoi.controlplane.db.models import WebhookEndpoint as EndpointRow
from convoi.controlplane.keys import Principal
from convoi.controlplane.schemas import ErrorResponse
from convoi.controlplane.webhooks import (
    create_endpoint,
    delete_endpoint,
    ensure_secret_key,
    list_endpoints,
)
from convoi.controlplane.webhooks_schemas import (
    WebhookCreate,
    WebhookDeleted,
    WebhookEndpoint,
    WebhookEndpointCreated,
    WebhookEndpointList,
)

__all__ = ["SecretPrincipalDep", "router"]

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {
        401: "Missing, malformed or unknown API key.",
        403: "A publishable key (pk_live_): webhooks need a secret key.",
        422: "Invalid body or parameter (the error names the field).",
        429: "rate_limited (Retry-After).",
        503: "The API is saturated (Retry-After).",
    }.items()
}


async def secret_principal(principal: PrincipalDep) -> Principal:
    """The principal, if its key is a secret key (403 otherwise, before the body is validated)."""
    ensure_secret_key(principal)
    return principal


SecretPrincipalDep = Annotated[Principal, Depends(secret_principal)]

_CREATE_EXAMPLES = {
    "all events": {"value": {"url": "https://example.com/convoi/webhooks"}},
    "endings only": {
        "value": {
            "url": "https://example.com/convoi/ended",
            "events": ["call.ended"],
            "description": "CRM sync",
        }
    },
}


def _public(row: EndpointRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "url": row.url,
        "events": row.events,
        "description": row.description,
        "created_at": row.created_at,
    }


@router.post(
    "",
    status_code=201,
    response_model=WebhookEndpointCreated,
    responses=ERRORS,
    summary="Create a webhook endpoint",
)
def create_webhook(
    body: Annotated[WebhookCreate, Body(openapi_examples=_CREATE_EXAMPLES)],
    principal: SecretPrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Any:
    """Register a URL for call events; the response holds its signing secret, shown only now."""
    row = create_endpoint(
        session,
        principal.account_id,
        body.url,
        body.events,
        body.description,
        https_only=settings.environment != "local",
    )
    return {**_public(row), "secret": row.secret}


@router.get(
    "", response_model=WebhookEndpointList, responses=ERRORS, summary="List webhook endpoints"
)
def list_webhooks(principal: SecretPrincipalDep, session: SessionDep) -> Any:
    """The account's webhook endpoints (without their secrets)."""
    rows = list_endpoints(session, principal.account_id)
    return {"object": "list", "data": [WebhookEndpoint.model_validate(_public(r)) for r in rows]}


@router.delete(
    "/{id}",
    response_model=WebhookDeleted,
    responses={**ERRORS, 404: {"model": ErrorResponse, "description": "No such endpoint."}},
    summary="Delete a webhook endpoint",
)
def delete_webhook(id: str, principal: SecretPrincipalDep, session: SessionDep) -> Any:
    """Stop delivering to the endpoint; its pending deliveries are canceled."""
    delete_endpoint(session, principal.account_id, id)
    return {"id": id, "object": "webhook_endpoint", "deleted": True}
