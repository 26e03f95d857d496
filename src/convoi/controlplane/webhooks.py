"""Customer webhook endpoints: create, list, delete (``/api/v1/public/webhooks``, secret keys only).

An endpoint is a URL, a signing secret (``whsec_`` + 48 hex digits, generated here and shown once,
in the create response) and an optional filter of event types (``call.status``, ``call.ended``;
omitted or null: all). Events are signed with the same scheme as the worker's events
(:mod:`convoi.reporting.signing`: ``Convoi-Signature: v1=<hex HMAC-SHA256 of "timestamp.body">``),
keyed with the endpoint's secret. The secret is stored as is (it is needed to sign), never logged.

Deleting an endpoint stops its deliveries: the pending ones become ``canceled``. An account may
have :data:`MAX_ENDPOINTS` endpoints. Outside ``CONVOI_ENVIRONMENT=local`` URLs must be https.

The delivery side (outbox, payloads, the deliverer) is :mod:`convoi.controlplane.webhooks_outbox`
and :mod:`convoi.controlplane.webhooks_delivery`.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Literal
from urllib.parse import urlsplit

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from convoi.controlplane.db.models import WebhookDelivery, WebhookEndpoint, utcnow
from convoi.controlplane.errors import InvalidRequest, NotFound, PermissionDenied
from convoi.controlplane.keys import Principal
from convoi.controlplane.webhooks_targets import blocked_host

__all__ = [
    "MAX_ENDPOINTS",
    "WEBHOOK_EVENT_TYPES",
    "WebhookEventType",
    "create_endpoint",
    "delete_endpoint",
    "ensure_secret_key",
    "list_endpoints",
    "new_secret",
    "validate_url",
]

WebhookEventType = Literal["call.status", "call.ended"]
WEBHOOK_EVENT_TYPES: tuple[WebhookEventType, ...] = ("call.status", "call.ended")
MAX_ENDPOINTS = 10
"""Endpoints per account (not deleted)."""
SECRET_PREFIX = "whsec_"
_MAX_URL = 2048


def new_secret() -> str:
    """A signing secret: ``whsec_`` + 48 hex digits (192 random bits)."""
    return f"{SECRET_PREFIX}{secrets.token_hex(24)}"


def _new_endpoint_id() -> str:
    return f"whk_{secrets.token_hex(12)}"


def ensure_secret_key(principal: Principal, what: str = "webhooks") -> None:
    """403 unless the request came with a secret key (``sk_live_…``)."""
    if not principal.is_secret:
        raise PermissionDenied(
            f"{what} require a secret key (sk_live_…); publishable keys (pk_live_…) are refused",
            field="Authorization",
        )


def validate_url(url: str, *, https_only: bool) -> str:
    """The URL if it is an absolute http(s) URL (https only, to a public host, when
    ``https_only``: outside local use), else 422."""
    parts = urlsplit(url.strip())
    schemes = ("https",) if https_only else ("http", "https")
    if len(url) > _MAX_URL or parts.scheme not in schemes or not parts.hostname:
        wanted = "an https:// URL" if https_only else "an absolute http:// or https:// URL"
        raise InvalidRequest(f"url must be {wanted} of at most {_MAX_URL} characters", field="url")
    if parts.username or parts.password:
        raise InvalidRequest("url must not carry credentials", field="url")
    if https_only and blocked_host(parts.hostname):  # outside local use: see webhooks_targets
        raise InvalidRequest(
            f"url must point to a public address; {parts.hostname} is not one", field="url"
        )
    return url.strip()


def create_endpoint(
    session: Session,
    account_id: str,
    url: str,
    events: Sequence[str] | None,
    description: str | None,
    *,
    https_only: bool,
) -> WebhookEndpoint:
    """Store a new endpoint with a fresh secret (422 past :data:`MAX_ENDPOINTS`). Commits."""
    url = validate_url(url, https_only=https_only)
    if events is not None:
        unknown = [e for e in events if e not in WEBHOOK_EVENT_TYPES]
        if unknown or not events:
            raise InvalidRequest(
                f"events must be a non-empty list of {', '.join(WEBHOOK_EVENT_TYPES)}",
                field="events",
            )
        events = sorted(set(events))
    count = session.scalar(
        select(func.count())
        .select_from(WebhookEndpoint)
        .where(WebhookEndpoint.account_id == account_id, WebhookEndpoint.deleted_at.is_(None))
    )
    if (count or 0) >= MAX_ENDPOINTS:
        raise InvalidRequest(
            f"this account has {MAX_ENDPOINTS} webhook endpoints already; delete one first",
            code="too_many_webhooks",
        )
    endpoint = WebhookEndpoint(
        id=_new_endpoint_id(),
        account_id=account_id,
        url=url,
        secret=new_secret(),
        events=list(events) if events is not None else None,
        description=description,
        created_at=utcnow(),
    )
    session.add(endpoint)
    session.commit()
    return endpoint


def list_endpoints(session: Session, account_id: str) -> list[WebhookEndpoint]:
    """The account's endpoints (not deleted), oldest first."""
    return list(
        session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.account_id == account_id, WebhookEndpoint.deleted_at.is_(None))
            .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        )
    )


def delete_endpoint(
    session: Session, account_id: str, endpoint_id: str, *, now: datetime | None = None
) -> None:
    """Delete the endpoint (404 if not the account's); its pending deliveries are canceled."""
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.account_id != account_id or endpoint.deleted_at is not None:
        raise NotFound(
            f"no webhook endpoint {endpoint_id!r} on this account",
            field="id",
            code="webhook_not_found",
        )
    endpoint.deleted_at = now or utcnow()
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.status == "pending")
        .values(status="canceled", claimed_until=None)
    )
    session.commit()
