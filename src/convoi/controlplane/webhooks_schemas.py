"""Bodies of the webhooks API, the calls list and a call's webhook deliveries (OpenAPI shapes)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from convoi.controlplane.schemas import CallRead, Timestamp
from convoi.controlplane.webhooks import WebhookEventType

__all__ = [
    "CallDeliveries",
    "CallList",
    "WebhookCreate",
    "WebhookDeleted",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEndpointCreated",
    "WebhookEndpointList",
]


class WebhookCreate(BaseModel):
    """A new webhook endpoint."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        description="Where events are POSTed (https; http is accepted in local use only).",
        max_length=2048,
        examples=["https://example.com/convoi/webhooks"],
    )
    events: list[WebhookEventType] | None = Field(
        None,
        description="Event types to deliver: call.status, call.ended. Omitted or null: all.",
        min_length=1,
    )
    description: str | None = Field(None, max_length=500, description="A note for yourself.")


class WebhookEndpoint(BaseModel):
    """A webhook endpoint (the secret is shown once, when it is created)."""

    id: str = Field(description="Endpoint id (whk_…).", examples=["whk_3c1f0e9a7b2d4c6e8f0a1b2c"])
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    url: str
    events: list[WebhookEventType] | None = Field(description="Delivered types; null: all.")
    description: str | None
    created_at: Timestamp


class WebhookEndpointCreated(WebhookEndpoint):
    """The endpoint just created, with its signing secret."""

    secret: str = Field(
        description="Signing secret (whsec_…): HMAC-SHA256 key of the Convoi-Signature header. "
        "Shown only now: store it.",
        examples=["whsec_9f2c4e6a8b0d1f3e5a7c9b1d3f5e7a9c0b2d4f6e8a0c1e3f"],
    )


class WebhookEndpointList(BaseModel):
    """The account's webhook endpoints."""

    object: Literal["list"] = "list"
    data: list[WebhookEndpoint]


class WebhookDeleted(BaseModel):
    """A deleted endpoint (its pending deliveries are canceled)."""

    id: str
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    deleted: Literal[True] = True


class WebhookDelivery(BaseModel):
    """One event for one endpoint, delivered or not yet."""

    id: str = Field(description="The event id (evt_…), also sent as Convoi-Event-Id.")
    object: Literal["webhook_delivery"] = "webhook_delivery"
    type: WebhookEventType
    endpoint_id: str
    url: str
    status: Literal["pending", "delivered", "failed", "canceled"] = Field(
        description="pending (not yet delivered: due, or waiting to retry or for the call's "
        "previous event), delivered (2xx), failed (given up after the retry window), canceled "
        "(the endpoint was deleted)."
    )
    attempts: int
    last_error: str | None = Field(description="Why the last attempt failed, if it did.")
    last_status_code: int | None
    next_attempt_at: Timestamp | None = Field(description="When it is tried next (pending).")
    created_at: Timestamp
    delivered_at: Timestamp | None
    payload: dict[str, Any] = Field(description="The JSON body POSTed (signed as sent).")


class CallDeliveries(BaseModel):
    """A call's webhook deliveries, in the order they were enqueued."""

    object: Literal["list"] = "list"
    data: list[WebhookDelivery]


class CallList(BaseModel):
    """One page of calls, newest first."""

    object: Literal["list"] = "list"
    data: list[CallRead] = Field(description="Calls, as GET /api/v1/public/calls/{id} shows them.")
    next_cursor: str | None = Field(
        description="Pass as cursor for the next page; null on the last page."
    )
