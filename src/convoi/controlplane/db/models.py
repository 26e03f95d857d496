"""The control plane's tables (SQLAlchemy 2 typed ORM). Migrations live in ``../migrations``.

- ``accounts``: who owns calls and keys;
- ``api_keys``: ``sk_live_`` / ``pk_live_`` keys, stored as a SHA-256 hex digest (never the key);
- ``calls``: one row per call: the request, the CallSpec dispatched, and the latest state reported
  by the worker (``last_event_sequence`` guards against late, older events); ``cost_amount`` is the
  exact decimal string;
- ``idempotency_keys``: per account, the request hash and the response to replay for 24 h;
- ``call_events``: every distinct signed event received (primary key: the event id);
- ``webhook_endpoints`` / ``webhook_deliveries``: customer webhooks and their durable outbox
  (:mod:`convoi.controlplane.webhooks`).
- ``definition_versions``: each account's agents, squads, phone numbers and knowledge bases, one
  row per version of each (the newest not deleted is current).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Account",
    "ApiKey",
    "Base",
    "Call",
    "CallCheckpoint",
    "CallEventRecord",
    "DefinitionVersion",
    "IdempotencyRecord",
    "WebhookDelivery",
    "WebhookEndpoint",
    "utcnow",
]

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores it naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with a constraint naming convention (stable migration names)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[str]: JSON(),
    }


class Account(Base):
    """An account: owns API keys and calls."""

    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """An API key, known only by its SHA-256 digest."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    """``sk_live`` or ``pk_live``."""
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    display_prefix: Mapped[str] = mapped_column(String(20))
    """The first characters of the key (``sk_live_1a2b``), to recognise it in listings."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Call(Base):
    """One call and its latest known state."""

    __tablename__ = "calls"
    __table_args__ = (
        Index("ix_calls_account_id_created_at", "account_id", "created_at"),
        Index("ix_calls_account_id_status", "account_id", "status"),
        # the concurrency limit counts an account's calls in progress on every create: by
        # status, so the count visits the calls in progress, not the account's whole history
    )

    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    type: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    agent_id: Mapped[str | None] = mapped_column(String(80))
    squad_id: Mapped[str | None] = mapped_column(String(80))
    phone_number_id: Mapped[str | None] = mapped_column(String(80))
    customer_number: Mapped[str | None] = mapped_column(String(20))
    participant_name: Mapped[str | None] = mapped_column(String(300))
    participant_identity: Mapped[str | None] = mapped_column(String(80))
    room_id: Mapped[str | None] = mapped_column(String(128))
    dispatch_id: Mapped[str | None] = mapped_column(String(128))
    call_metadata: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    callspec: Mapped[str] = mapped_column(Text)
    """The CallSpec JSON dispatched to the worker (customer name and metadata included)."""
    ended_reason: Mapped[str | None] = mapped_column(String(40))
    fault: Mapped[str | None] = mapped_column(String(20))
    detail: Mapped[str | None] = mapped_column(Text)
    transfer: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """The ``call.ended`` event's ``transfer`` (destination, mode, succeeded), as JSON."""
    voicemail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """The ``call.ended`` event's ``voicemail`` (verdict, detection_seconds, action), as JSON."""
    definition_versions: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    """Object id → the version of each definition the call was dispatched with."""
    duration_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    cost_amount: Mapped[str] = mapped_column(String(64), default="0")
    """Exact decimal, plain notation."""
    cost_currency: Mapped[str] = mapped_column(String(3), default="USD")
    last_event_sequence: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class IdempotencyRecord(Base):
    """An Idempotency-Key seen on this account: the request's hash and the response to replay."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("account_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    """SHA-256 of the request body as canonical JSON."""
    call_id: Mapped[str | None] = mapped_column(String(80))
    response_status: Mapped[int | None] = mapped_column(Integer)
    """None while the first request is still running."""
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    locked_at: Mapped[datetime] = mapped_column(default=utcnow)


class CallEventRecord(Base):
    """One distinct call event received from the worker."""

    __tablename__ = "call_events"
    __table_args__ = (Index("ix_call_events_call_id_sequence", "call_id", "sequence"),)

    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id"))
    sequence: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    body: Mapped[str] = mapped_column(Text)
    """The event JSON exactly as received (signed bytes, UTF-8)."""
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    """How many more times the same id arrived afterwards (nothing re-applied)."""


class CallCheckpoint(Base):
    """The latest checkpoint of an active call (customer speech: deleted when the call ends)."""

    __tablename__ = "call_checkpoints"

    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id"), primary_key=True)
    sequence: Mapped[int] = mapped_column(Integer)
    """The sequence of the event that carried it."""
    body: Mapped[str] = mapped_column(Text)
    """The :class:`~convoi.reporting.events.Checkpoint` JSON."""
    resumes: Mapped[int] = mapped_column(Integer, default=0)
    """Times the control plane has dispatched the call again (its lease's resumes)."""
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookEndpoint(Base):
    """A customer's webhook endpoint: where call events are POSTed, signed with ``secret``."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_account_id", "account_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    url: Mapped[str] = mapped_column(String(2048))
    secret: Mapped[str] = mapped_column(String(80))
    """The signing secret (``whsec_…``); kept to sign, shown to the customer once."""
    events: Mapped[list[str] | None] = mapped_column(JSON)
    """Event types delivered (None: all)."""
    description: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)


class WebhookDelivery(Base):
    """One event for one endpoint, in the outbox until delivered (or given up on)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint_id_call_id", "endpoint_id", "call_id", "id"),
        Index("ix_webhook_deliveries_call_id", "call_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    """Enqueue order: a call's deliveries to an endpoint go out in this order."""
    event_id: Mapped[str] = mapped_column(String(80))
    """The event's id (``evt_…``), the same for every endpoint: receivers de-duplicate by it."""
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"))
    account_id: Mapped[str] = mapped_column(String(64))
    call_id: Mapped[str] = mapped_column(String(80))
    type: Mapped[str] = mapped_column(String(20))
    payload: Mapped[str] = mapped_column(Text)
    """The exact JSON body POSTed (and signed)."""
    status: Mapped[str] = mapped_column(String(12), default="pending")
    """``pending``, ``delivered``, ``failed`` (gave up) or ``canceled`` (endpoint deleted)."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(default=None)
    """A deliverer holds the row until then (its lease); None when nobody does."""
    claimed_by: Mapped[str | None] = mapped_column(String(40), default=None)
    last_error: Mapped[str | None] = mapped_column(String(500), default=None)
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)


class DefinitionVersion(Base):
    """One version of an account's agent, squad, phone number or knowledge base."""

    __tablename__ = "definition_versions"
    __table_args__ = (
        UniqueConstraint("account_id", "object_id", "version"),
        Index("ix_definition_versions_account_id_kind", "account_id", "kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    kind: Mapped[str] = mapped_column(String(20))
    """``agent``, ``squad``, ``phone_number`` or ``knowledge_base``."""
    object_id: Mapped[str] = mapped_column(String(80))
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The validated definition (the model's JSON dump, id included)."""
    content_hash: Mapped[str] = mapped_column(String(64))
    """SHA-256 of the document as canonical JSON: an unchanged import adds no version."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    """Set on every version of an object when it is deleted."""
